package fakenim

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// ProxyFor is the proxy Go's HTTP client would use for target ("" = direct), from the variables
// getenv returns (read on every call, unlike http.ProxyFromEnvironment, which caches them).
func ProxyFor(getenv func(string) string, target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	p, err := proxyConfig(getenv).ProxyFunc()(u)
	if err != nil || p == nil {
		return "", err
	}
	return p.String(), nil
}

func proxyConfig(getenv func(string) string) *httpproxy.Config {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	return &httpproxy.Config{HTTPProxy: first("HTTP_PROXY", "http_proxy"),
		HTTPSProxy: first("HTTPS_PROXY", "https_proxy"), NoProxy: first("NO_PROXY", "no_proxy")}
}

// NewHTTPClient is an HTTP client that honours the proxy variables and trusts caBundle (when not
// "") instead of the system roots, as a NIM given SSL_CERT_FILE does.
func NewHTTPClient(getenv func(string) string, caBundle string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	proxy := proxyConfig(getenv).ProxyFunc()
	tr.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
	if caBundle != "" {
		data, err := os.ReadFile(caBundle)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", caBundle)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// Probe opens a TCP connection to addr (host:port) and closes it: nil when it connected.
func Probe(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

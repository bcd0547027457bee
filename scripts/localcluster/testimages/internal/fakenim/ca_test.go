package fakenim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePEM(t *testing.T, ders ...[]byte) string {
	t.Helper()
	var data []byte
	for _, der := range ders {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	path := filepath.Join(t.TempDir(), "ca-bundle.crt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func selfSignedCA(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The CA bundle the init container writes is what outbound TLS trusts, and its subjects are listed.
func TestCABundleIsTrustedAndListed(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hi")) }))
	defer ts.Close()
	fetch := "/v1/debug/fetch?url=" + url.QueryEscape(ts.URL)
	other := selfSignedCA(t, "nimguard other CA")

	bundle := writePEM(t, other, ts.Certificate().Raw)
	s := newTestServer(map[string]string{"SSL_CERT_FILE": bundle})
	_, out, raw := do(t, s, "GET", "/v1/debug/ca", "")
	subjects, _ := out["subjects"].([]any)
	if out["path"] != bundle || len(subjects) != 2 || subjects[0] != "CN=nimguard other CA" ||
		!strings.Contains(subjects[1].(string), "Acme Co") {
		t.Fatalf("ca: %s", raw)
	}
	if _, out, raw = do(t, s, "GET", fetch, ""); out["status"] != float64(200) || out["body"] != "hi" {
		t.Fatalf("fetch with the server's CA in the bundle: %s", raw)
	}

	s = newTestServer(map[string]string{"SSL_CERT_FILE": writePEM(t, other)})
	if _, out, raw = do(t, s, "GET", fetch, ""); out["status"] != nil || !strings.Contains(out["error"].(string), "unknown authority") {
		t.Fatalf("fetch without the server's CA: %s", raw)
	}
}

func TestNoCABundle(t *testing.T) {
	if _, err := os.Stat(CABundlePath); err == nil {
		t.Skip(CABundlePath + " exists on this machine")
	}
	_, out, raw := do(t, newTestServer(map[string]string{}), "GET", "/v1/debug/ca", "")
	if out["path"] != "" || !strings.Contains(out["error"].(string), "SSL_CERT_FILE") {
		t.Fatalf("%s", raw)
	}
}

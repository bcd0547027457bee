// Command fakenim is a stand-in for an NVIDIA NIM in the nimguard.k8s tests on a real node (it
// runs no model) and a small HTTP/TCP client for the test's client pods.
//
//	fakenim [serve]              serve the NIM API on NIM_SERVER_PORT (default 8000)
//	fakenim get URL              GET, body to stdout; exit 0 on 2xx, 1 otherwise
//	fakenim post URL JSON        POST a JSON body; exit 0 on 2xx, 1 otherwise
//	fakenim probe HOST:PORT      TCP connect; exit 0 connected, 1 refused or timed out
//
// Flags of get, post and probe: --timeout DURATION; of get and post: --cacert FILE (default
// SSL_CERT_FILE, else the system roots). Usage errors exit 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"nimguard.local/testimages/internal/fakenim"
)

const usage = `fakenim: a stand-in for an NVIDIA NIM (no model, no GPU) and a test client.

  fakenim [serve] [--listen ADDR]   serve on :$NIM_SERVER_PORT (default 8000)
  fakenim get URL [--timeout 10s] [--cacert FILE]
  fakenim post URL JSON [--timeout 10s] [--cacert FILE]
  fakenim probe HOST:PORT [--timeout 3s]

serve reads: NGC_API_KEY, NGC_API_KEY_FILE (or ` + fakenim.DefaultKeyDir + `/NGC_API_KEY),
FAKENIM_KEY_NAME (another key variable name), NIM_MODEL_NAME, FAKENIM_STARTUP_DELAY (e.g. 3s),
SSL_CERT_FILE, HTTP(S)_PROXY, NO_PROXY.
`

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		os.Exit(serve(args))
	case "get", "post":
		os.Exit(request(cmd, args))
	case "probe":
		os.Exit(probe(args))
	case "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "fakenim: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
}

// parse accepts flags before and after the positional arguments and wants exactly n of them.
func parse(fs *flag.FlagSet, args []string, n int) ([]string, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != n {
		fmt.Fprintf(os.Stderr, "fakenim %s: want %d argument(s), got %d\n\n%s", fs.Name(), n, len(pos), usage)
		return nil, false
	}
	return pos, true
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	port := os.Getenv("NIM_SERVER_PORT")
	if port == "" {
		port = "8000"
	}
	listen := fs.String("listen", ":"+port, "address to listen on")
	if _, ok := parse(fs, args, 0); !ok {
		return 2
	}
	srv, err := fakenim.NewServer()
	if err != nil {
		log.Print(err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go srv.WatchKey(ctx, time.Second)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Print(err)
		return 1
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("fake NIM (no model, no GPU) serving %s on %s", srv.Model, ln.Addr())
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err = <-done:
		log.Print(err)
		return 1
	case <-ctx.Done():
	}
	// SIGTERM from the kubelet: finish the requests in flight, then exit 0.
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		log.Print(err)
	}
	log.Print("stopped")
	return 0
}

func request(method string, args []string) int {
	fs := flag.NewFlagSet(method, flag.ContinueOnError)
	timeout := fs.Duration("timeout", 10*time.Second, "whole request timeout")
	cacert := fs.String("cacert", os.Getenv("SSL_CERT_FILE"), "CA bundle to trust instead of the system roots")
	n := 1
	if method == "post" {
		n = 2
	}
	pos, ok := parse(fs, args, n)
	if !ok {
		return 2
	}
	client, err := fakenim.NewHTTPClient(os.Getenv, *cacert, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakenim:", err)
		return 1
	}
	var resp *http.Response
	if method == "post" {
		resp, err = client.Post(pos[0], "application/json", strings.NewReader(pos[1]))
	} else {
		resp, err = client.Get(pos[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakenim:", err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, "fakenim:", err)
		return 1
	}
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(os.Stderr, "fakenim: %s %s: %s\n", strings.ToUpper(method), pos[0], resp.Status)
		return 1
	}
	return 0
}

func probe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "connect timeout")
	pos, ok := parse(fs, args, 1)
	if !ok {
		return 2
	}
	if err := fakenim.Probe(pos[0], *timeout); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			fmt.Printf("timeout: %s\n", pos[0])
		} else {
			fmt.Printf("refused: %s: %v\n", pos[0], err)
		}
		return 1
	}
	fmt.Printf("connected: %s\n", pos[0])
	return 0
}

package fakenim

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// DefaultModel is served when NIM_MODEL_NAME is unset.
const DefaultModel = "nimguard/fake-nim"

// CABundlePath is where the collection's CA init container writes the bundle (render.py
// CA_BUNDLE_DIR); SSL_CERT_FILE, which the pod spec sets to it, wins.
const CABundlePath = "/etc/nimguard/ca/ca-bundle.crt"

// Server holds the fake NIM's state; its Handler serves the NIM API and the debug endpoints.
type Server struct {
	Model   string
	Keys    *KeySource
	Environ func() []string     // os.Environ in production
	Getenv  func(string) string // os.Getenv in production
	// NotBefore: not ready until then (FAKENIM_STARTUP_DELAY), so a rolling restart has a
	// window in which a new pod is Running but not Ready, as a real NIM loading a model is.
	NotBefore time.Time
	Now       func() time.Time
}

// NewServer reads the configuration from the environment.
func NewServer() (*Server, error) {
	model := os.Getenv("NIM_MODEL_NAME")
	if model == "" {
		model = DefaultModel
	}
	name := os.Getenv("FAKENIM_KEY_NAME") // the collection's auth_secret_key, when not NGC_API_KEY
	if name == "" {
		name = "NGC_API_KEY"
	}
	s := &Server{Model: model, Keys: NewKeySource(name), Environ: os.Environ, Getenv: os.Getenv, Now: time.Now}
	if d := os.Getenv("FAKENIM_STARTUP_DELAY"); d != "" {
		delay, err := time.ParseDuration(d)
		if err != nil {
			return nil, fmt.Errorf("FAKENIM_STARTUP_DELAY=%q: %v (e.g. 3s)", d, err)
		}
		s.NotBefore = time.Now().Add(delay)
	}
	return s, nil
}

// WatchKey re-reads the key every interval until ctx ends: a Secret volume swaps a symlink on
// rotation and a vault agent rewrites its file, so polling the content catches both.
func (s *Server) WatchKey(ctx context.Context, interval time.Duration) {
	st, _ := s.Keys.Reload()
	logKey(st)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if st, changed := s.Keys.Reload(); changed {
				logKey(st)
			}
		}
	}
}

func logKey(st KeyState) {
	if st.Ready() {
		log.Printf("key: source=%s sha256_12=%s", st.Source, st.Hash12)
	} else {
		log.Printf("key: none (%s)", st.Reason)
	}
}

// Handler routes every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health/live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "live"})
	})
	mux.HandleFunc("GET /v1/health/ready", s.ready)
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("GET /v1/debug/key", s.debugKey)
	mux.HandleFunc("GET /v1/debug/env", s.debugEnv)
	mux.HandleFunc("GET /v1/debug/ca", s.debugCA)
	mux.HandleFunc("GET /v1/debug/proxy", s.debugProxy)
	mux.HandleFunc("GET /v1/debug/fetch", s.debugFetch)
	mux.HandleFunc("GET /v1/debug/probe", s.debugProbe)
	return logRequests(mux)
}

func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		log.Printf("%s %s %d", r.Method, r.URL.Path, rec.status) // path only: queries may carry URLs
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeReport answers a debug query with its findings and, when there is one, the error (200 both
// ways: the query worked, what it found is the answer).
func writeReport(w http.ResponseWriter, out map[string]any, err error) {
	if err != nil {
		out["error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

// openAIError writes the error shape OpenAI clients parse.
func openAIError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": status}})
}

// readiness: ready, or the reason it is not.
func (s *Server) readiness() (bool, string) {
	st := s.Keys.State()
	if !st.Ready() {
		return false, st.Reason
	}
	if now := s.Now(); now.Before(s.NotBefore) {
		return false, fmt.Sprintf("starting: ready in %s (FAKENIM_STARTUP_DELAY)", s.NotBefore.Sub(now).Round(time.Second))
	}
	return true, ""
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if ok, reason := s.readiness(); !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{map[string]any{
		"id": s.Model, "object": "model", "created": 0, "owned_by": "nimguard-fakenim", "root": s.Model}}})
}

// ChatRequest is the part of an OpenAI chat completion request the fake NIM reads.
type ChatRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"` // a string, or a list of {type, text} parts
	} `json:"messages"`
}

// messageText flattens a message's content (string or text parts).
func messageText(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("content must be a string or a list of text parts")
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n"), nil
}

// Answer is the deterministic reply to a prompt: tests can assert on it.
func Answer(prompt string) string { return "fake NIM echo: " + prompt }

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	if ok, reason := s.readiness(); !ok {
		openAIError(w, http.StatusServiceUnavailable, "service_unavailable", "not ready: "+reason)
		return
	}
	var req ChatRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "request body is not JSON: "+err.Error())
		return
	}
	if req.Model != "" && req.Model != s.Model {
		openAIError(w, http.StatusNotFound, "not_found_error",
			fmt.Sprintf("model %q does not exist; this server serves %q", req.Model, s.Model))
		return
	}
	if req.Stream {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "stream: true is not supported by the fake NIM")
		return
	}
	last, found, promptWords := "", false, 0
	for i, m := range req.Messages {
		text, err := messageText(m.Content)
		if err != nil {
			openAIError(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("messages[%d]: %v", i, err))
			return
		}
		promptWords += len(strings.Fields(text))
		if m.Role == "user" {
			last, found = text, true
		}
	}
	if !found {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "messages: at least one message with role user is required")
		return
	}
	answer := Answer(last)
	completion := len(strings.Fields(answer))
	writeJSON(w, http.StatusOK, map[string]any{
		"id": "chatcmpl-" + Hash12(s.Model+"\x00"+last), "object": "chat.completion", "created": 0, "model": s.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": answer}}},
		"usage": map[string]any{"prompt_tokens": promptWords, "completion_tokens": completion,
			"total_tokens": promptWords + completion},
	})
}

func (s *Server) debugKey(w http.ResponseWriter, _ *http.Request) {
	st := s.Keys.State()
	ready, reason := s.readiness()
	writeJSON(w, http.StatusOK, map[string]any{"source": st.Source, "sha256_12": st.Hash12, "ready": ready,
		"reason": reason})
}

// SensitiveName reports whether an environment variable's name suggests a secret.
func SensitiveName(name string) bool {
	u := strings.ToUpper(name)
	for _, w := range []string{"KEY", "TOKEN", "SECRET", "PASSWORD"} {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}

// debugEnv: which secret-looking variables exist (names only) and whether any value is the key,
// so a test proves that the `file` delivery left the key out of the environment.
func (s *Server) debugEnv(w http.ResponseWriter, _ *http.Request) {
	names, keyInEnv := []string{}, false
	for _, kv := range s.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if SensitiveName(name) {
			names = append(names, name)
		}
		if s.Keys.Matches(value) {
			keyInEnv = true
		}
	}
	sort.Strings(names)
	writeJSON(w, http.StatusOK, map[string]any{"sensitive_names": names, "key_in_env": keyInEnv})
}

// caBundle is the bundle the server trusts: SSL_CERT_FILE, else the init container's output.
func (s *Server) caBundle() string {
	if p := s.Getenv("SSL_CERT_FILE"); p != "" {
		return p
	}
	if _, err := os.Stat(CABundlePath); err == nil {
		return CABundlePath
	}
	return ""
}

// CertSubjects lists the subjects of the PEM certificates in data.
func CertSubjects(data []byte) ([]string, error) {
	subjects := []string{}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return subjects, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return subjects, fmt.Errorf("certificate %d: %v", len(subjects)+1, err)
		}
		subjects = append(subjects, cert.Subject.String())
	}
}

func (s *Server) debugCA(w http.ResponseWriter, _ *http.Request) {
	path := s.caBundle()
	if path == "" {
		writeJSON(w, http.StatusOK, map[string]any{"path": "", "subjects": []string{},
			"error": "no CA bundle: SSL_CERT_FILE is unset and " + CABundlePath + " does not exist"})
		return
	}
	out := map[string]any{"path": path, "subjects": []string{}}
	data, err := os.ReadFile(path)
	if err == nil {
		var subjects []string
		subjects, err = CertSubjects(data)
		out["subjects"] = subjects
	}
	writeReport(w, out, err)
}

// ProxyVars are the variables Go's proxy selection reads, upper case first.
var ProxyVars = []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"}

// RedactURL drops a password from a proxy URL (user:password@host).
func RedactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}

func (s *Server) debugProxy(w http.ResponseWriter, r *http.Request) {
	vars := map[string]string{}
	for _, n := range ProxyVars {
		if v := s.Getenv(n); v != "" {
			vars[n] = RedactURL(v)
		}
	}
	out := map[string]any{"env": vars}
	if target := r.URL.Query().Get("url"); target != "" {
		p, err := ProxyFor(s.Getenv, target)
		out["url"], out["proxy"] = target, RedactURL(p)
		writeReport(w, out, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// debugFetch makes an outbound GET as the NIM would (proxy variables, the CA bundle) and reports
// the outcome: tests prove with it that the custom CA is trusted and that egress is policed.
func (s *Server) debugFetch(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("url")
	if target == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "url query parameter required"})
		return
	}
	timeout := queryDuration(r, 5*time.Second)
	client, err := NewHTTPClient(s.Getenv, s.caBundle(), timeout)
	out := map[string]any{"url": target, "ca_bundle": s.caBundle()}
	if err == nil {
		var resp *http.Response
		if resp, err = client.Get(target); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			_ = resp.Body.Close()
			out["status"], out["body"] = resp.StatusCode, string(body)
		}
	}
	writeReport(w, out, err)
}

func (s *Server) debugProbe(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("addr")
	if addr == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "addr query parameter required (host:port)"})
		return
	}
	err := Probe(addr, queryDuration(r, 3*time.Second))
	out := map[string]any{"addr": addr, "connected": err == nil}
	writeReport(w, out, err)
}

func queryDuration(r *http.Request, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && d > 0 && d <= time.Minute {
		return d
	}
	return def
}

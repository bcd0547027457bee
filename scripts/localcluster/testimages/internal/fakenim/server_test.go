package fakenim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestServer(env map[string]string) *Server {
	getenv := func(k string) string { return env[k] }
	keys := &KeySource{Name: "NGC_API_KEY", Getenv: getenv, Exists: func(string) bool { return false },
		ReadAll: func(string) ([]byte, error) { return nil, http.ErrMissingFile }}
	keys.Reload()
	environ := func() []string {
		out := []string{}
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		return out
	}
	return &Server{Model: DefaultModel, Keys: keys, Environ: environ, Getenv: getenv, Now: time.Now}
}

func do(t *testing.T, s *Server, method, path, body string) (int, map[string]any, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out, rec.Body.String()
}

func TestReadyNeedsKey(t *testing.T) {
	code, out, _ := do(t, newTestServer(map[string]string{}), "GET", "/v1/health/ready", "")
	if code != 503 || !strings.Contains(out["reason"].(string), "NGC_API_KEY") {
		t.Fatalf("no key: %d %v", code, out)
	}
	if code, _, _ = do(t, newTestServer(map[string]string{}), "GET", "/v1/health/live", ""); code != 200 {
		t.Fatalf("live without key: %d", code)
	}
	if code, out, _ = do(t, newTestServer(map[string]string{"NGC_API_KEY": "k"}), "GET", "/v1/health/ready", ""); code != 200 {
		t.Fatalf("with key: %d %v", code, out)
	}
}

func TestStartupDelayHoldsReadiness(t *testing.T) {
	s := newTestServer(map[string]string{"NGC_API_KEY": "k"})
	now := time.Unix(1000, 0)
	s.Now = func() time.Time { return now }
	s.NotBefore = now.Add(3 * time.Second)
	if code, out, _ := do(t, s, "GET", "/v1/health/ready", ""); code != 503 || !strings.Contains(out["reason"].(string), "starting") {
		t.Fatalf("before the delay: %d %v", code, out)
	}
	now = now.Add(3 * time.Second)
	if code, _, _ := do(t, s, "GET", "/v1/health/ready", ""); code != 200 {
		t.Fatalf("after the delay: %d", code)
	}
}

func TestDebugKeyShowsHashNeverKey(t *testing.T) {
	code, out, raw := do(t, newTestServer(map[string]string{"NGC_API_KEY": "nvapi-very-secret"}), "GET", "/v1/debug/key", "")
	if code != 200 || out["source"] != "env:NGC_API_KEY" || out["sha256_12"] != Hash12("nvapi-very-secret") {
		t.Fatalf("%d %v", code, out)
	}
	if strings.Contains(raw, "very-secret") {
		t.Fatal("the key leaked")
	}
}

func TestDebugEnvNamesOnly(t *testing.T) {
	s := newTestServer(map[string]string{"NGC_API_KEY": "s3cr3t", "OTHER": "s3cr3t", "HF_TOKEN": "t", "PATH": "/bin",
		"DB_PASSWORD": "p"})
	_, out, raw := do(t, s, "GET", "/v1/debug/env", "")
	names, _ := json.Marshal(out["sensitive_names"])
	if string(names) != `["DB_PASSWORD","HF_TOKEN","NGC_API_KEY"]` || out["key_in_env"] != true {
		t.Fatalf("%s %v", names, out)
	}
	if strings.Contains(raw, "s3cr3t") {
		t.Fatal("a value leaked")
	}
	// The file delivery: the key only in a file, nothing in the environment equals it.
	s.Keys = &KeySource{Name: "NGC_API_KEY", Getenv: func(k string) string {
		return map[string]string{"NGC_API_KEY_FILE": "/f"}[k]
	}, Exists: func(string) bool { return false }, ReadAll: func(string) ([]byte, error) { return []byte("only-in-file"), nil }}
	s.Keys.Reload()
	if _, out, _ = do(t, s, "GET", "/v1/debug/env", ""); out["key_in_env"] != false {
		t.Fatalf("file delivery: %v", out)
	}
}

func TestChatEchoesLastUserMessage(t *testing.T) {
	s := newTestServer(map[string]string{"NGC_API_KEY": "k"})
	body := `{"model":"nimguard/fake-nim","messages":[{"role":"system","content":"be brief"},
	  {"role":"user","content":"first"},{"role":"assistant","content":"x"},
	  {"role":"user","content":[{"type":"text","text":"hello"},{"type":"text","text":"world"}]}]}`
	code, out, raw := do(t, s, "POST", "/v1/chat/completions", body)
	if code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	choice := out["choices"].([]any)[0].(map[string]any)
	msg := choice["message"].(map[string]any)
	if msg["role"] != "assistant" || msg["content"] != Answer("hello\nworld") || choice["finish_reason"] != "stop" ||
		out["object"] != "chat.completion" || out["model"] != DefaultModel {
		t.Fatalf("%v", out)
	}
	_, _, again := do(t, s, "POST", "/v1/chat/completions", body)
	if again != raw {
		t.Fatal("the answer is not deterministic")
	}
}

func TestChatErrors(t *testing.T) {
	ok := newTestServer(map[string]string{"NGC_API_KEY": "k"})
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"not json", "{", 400, "not JSON"},
		{"no user", `{"messages":[{"role":"system","content":"x"}]}`, 400, "role user"},
		{"bad content", `{"messages":[{"role":"user","content":5}]}`, 400, "messages[0]"},
		{"other model", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, 404, "does not exist"},
		{"stream", `{"stream":true,"messages":[{"role":"user","content":"x"}]}`, 400, "stream"},
	} {
		code, out, raw := do(t, ok, "POST", "/v1/chat/completions", c.body)
		e, _ := out["error"].(map[string]any)
		if code != c.code || e == nil || !strings.Contains(e["message"].(string), c.want) {
			t.Errorf("%s: %d %s", c.name, code, raw)
		}
	}
	code, _, _ := do(t, newTestServer(map[string]string{}), "POST", "/v1/chat/completions",
		`{"messages":[{"role":"user","content":"x"}]}`)
	if code != 503 {
		t.Errorf("without a key: %d", code)
	}
}

func TestModelsAndProxy(t *testing.T) {
	s := newTestServer(map[string]string{"HTTPS_PROXY": "http://u:pw@proxy:3128", "NO_PROXY": "internal.example"})
	_, out, _ := do(t, s, "GET", "/v1/models", "")
	if out["data"].([]any)[0].(map[string]any)["id"] != DefaultModel {
		t.Fatalf("%v", out)
	}
	_, out, raw := do(t, s, "GET", "/v1/debug/proxy?url=https://api.ngc.nvidia.com/", "")
	if strings.Contains(raw, "pw@") || out["proxy"] != "http://u:REDACTED@proxy:3128" {
		t.Fatalf("%s", raw)
	}
	if _, out, _ = do(t, s, "GET", "/v1/debug/proxy?url=https://internal.example/", ""); out["proxy"] != "" {
		t.Fatalf("NO_PROXY ignored: %v", out)
	}
}

package fakenim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEnv builds a KeySource over a map environment and real files under t.TempDir().
func fakeEnv(env map[string]string, defaultExists bool) *KeySource {
	return &KeySource{Name: "NGC_API_KEY", Getenv: func(k string) string { return env[k] }, ReadAll: os.ReadFile,
		Exists: func(string) bool { return defaultExists }}
}

func TestKeyFromEnv(t *testing.T) {
	st, changed := fakeEnv(map[string]string{"NGC_API_KEY": "nvapi-abc\n"}, false).Reload()
	if !changed || !st.Ready() || st.Source != "env:NGC_API_KEY" || st.Hash12 != Hash12("nvapi-abc") || len(st.Hash12) != 12 {
		t.Fatalf("state %+v changed=%v", st, changed)
	}
}

func TestNoKeyIsNotReadyWithReason(t *testing.T) {
	st, _ := fakeEnv(map[string]string{}, false).Reload()
	if st.Ready() || st.Source != "" || st.Hash12 != "" || !strings.Contains(st.Reason, "NGC_API_KEY_FILE") {
		t.Fatalf("state %+v", st)
	}
}

func TestFileWinsOverEnvAndFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "NGC_API_KEY")
	if err := os.WriteFile(path, []byte("old-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := fakeEnv(map[string]string{"NGC_API_KEY": "old-key", "NGC_API_KEY_FILE": path}, false)
	st, _ := k.Reload()
	if st.Source != "file:"+path || st.Hash12 != Hash12("old-key") {
		t.Fatalf("state %+v", st)
	}
	if _, changed := k.Reload(); changed {
		t.Fatal("a reload without a change reported one")
	}
	// Kubernetes swaps a symlink on rotation: write the new file elsewhere and rename over.
	if err := os.WriteFile(path+".new", []byte("new-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	st, changed := k.Reload()
	if !changed || st.Hash12 != Hash12("new-key") || !k.Matches("new-key") || k.Matches("old-key") {
		t.Fatalf("after rotation %+v changed=%v", st, changed)
	}
}

func TestMissingOrEmptyFileIsNotReady(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "absent")
	st, _ := fakeEnv(map[string]string{"NGC_API_KEY_FILE": missing, "NGC_API_KEY": "from-env"}, false).Reload()
	if st.Ready() || st.Source != "file:"+missing || !strings.Contains(st.Reason, "cannot read") {
		t.Fatalf("missing file: %+v", st)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ = fakeEnv(map[string]string{"NGC_API_KEY_FILE": empty}, false).Reload()
	if st.Ready() || !strings.Contains(st.Reason, "empty") {
		t.Fatalf("empty file: %+v", st)
	}
}

func TestDefaultMountPathIsUsed(t *testing.T) {
	var read string
	k := &KeySource{Name: "NGC_API_KEY", Getenv: func(string) string { return "" },
		Exists:  func(p string) bool { return p == DefaultKeyDir+"/NGC_API_KEY" },
		ReadAll: func(p string) ([]byte, error) { read = p; return []byte("k"), nil }}
	st, _ := k.Reload()
	if read != DefaultKeyDir+"/NGC_API_KEY" || st.Source != "file:"+read || !st.Ready() {
		t.Fatalf("read %q, state %+v", read, st)
	}
}

func TestReadErrorNeverCarriesContent(t *testing.T) {
	k := &KeySource{Name: "NGC_API_KEY", Getenv: func(k string) string {
		if k == "NGC_API_KEY_FILE" {
			return "/x"
		}
		return "env-secret"
	}, Exists: func(string) bool { return false },
		ReadAll: func(string) ([]byte, error) { return nil, errors.New("permission denied") }}
	st, _ := k.Reload()
	if st.Ready() || strings.Contains(st.Reason, "env-secret") || !strings.Contains(st.Reason, "permission denied") {
		t.Fatalf("state %+v", st)
	}
}

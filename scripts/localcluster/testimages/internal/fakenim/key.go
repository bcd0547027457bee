// Package fakenim is a stand-in for an NVIDIA NIM, for tests of the nimguard.k8s collection on a
// real node: it serves the endpoints the collection's probes and clients use and reports, on
// debug endpoints, what the hardened pod spec delivered (the key's source and a short hash, never
// the key; proxy settings; the CA bundle). It runs no model.
package fakenim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
)

// DefaultKeyDir is where the collection mounts the key for the `file` and `vault_agent` deliveries
// (render.py: secret_delivery.mount_path defaults to /var/run/secrets/nim, file name = key name).
const DefaultKeyDir = "/var/run/secrets/nim"

// KeyState is what the server knows about its API key at one moment.
type KeyState struct {
	Source string // "env:NGC_API_KEY", "file:/path" or "" when there is no key
	Hash12 string // first 12 hex digits of sha256(key); "" when there is no key
	Reason string // why there is no key; "" when there is one
	key    string
}

// Ready reports whether a key was found.
func (s KeyState) Ready() bool { return s.key != "" }

// Hash12 is the short fingerprint reported instead of a key.
func Hash12(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])[:12]
}

// KeySource finds the key the way the collection delivers it. A file wins over the environment:
// with the `file` delivery the pod's wrapper also exports the key read at start, and only the file
// follows a rotation.
//   - NAME_FILE set: that file (its absence is a reason not to be ready: the pod spec asked for it);
//   - else DefaultKeyDir/NAME when it exists;
//   - else the environment variable NAME.
type KeySource struct {
	Name    string                       // variable name, NGC_API_KEY unless configured
	Getenv  func(string) string          // os.Getenv in production
	ReadAll func(string) ([]byte, error) // os.ReadFile in production
	Exists  func(string) bool            // whether the default file exists
	mu      sync.Mutex
	state   KeyState
}

// NewKeySource reads the real environment and files.
func NewKeySource(name string) *KeySource {
	return &KeySource{Name: name, Getenv: os.Getenv, ReadAll: os.ReadFile, Exists: func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}}
}

// trimKey drops trailing line ends: `$(cat file)` does the same in the collection's wrapper, so
// both sources of one Secret give one hash.
func trimKey(v string) string { return strings.TrimRight(v, "\r\n") }

func (k *KeySource) find() KeyState {
	fileVar := k.Name + "_FILE"
	path := k.Getenv(fileVar)
	if path == "" {
		if def := DefaultKeyDir + "/" + k.Name; k.Exists(def) {
			path = def
		}
	}
	if path != "" {
		data, err := k.ReadAll(path)
		if err != nil {
			// The error names the path and the cause (e.g. permission denied), never content.
			return KeyState{Source: "file:" + path, Reason: fmt.Sprintf("cannot read the key file: %v", err)}
		}
		v := trimKey(string(data))
		if v == "" {
			return KeyState{Source: "file:" + path, Reason: "the key file " + path + " is empty"}
		}
		return KeyState{Source: "file:" + path, Hash12: Hash12(v), key: v}
	}
	if v := trimKey(k.Getenv(k.Name)); v != "" {
		return KeyState{Source: "env:" + k.Name, Hash12: Hash12(v), key: v}
	}
	return KeyState{Reason: fmt.Sprintf("no %s: set %s, or %s to a file holding it, or mount it at %s/%s",
		k.Name, k.Name, fileVar, DefaultKeyDir, k.Name)}
}

// Reload looks for the key again and returns the new state and whether it changed (source, key
// or readiness).
func (k *KeySource) Reload() (KeyState, bool) {
	s := k.find()
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := s.Source != k.state.Source || s.key != k.state.key || s.Reason != k.state.Reason
	k.state = s
	return s, changed
}

// State is the state of the last Reload.
func (k *KeySource) State() KeyState {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state
}

// Matches reports whether v equals the current key (without exposing it).
func (k *KeySource) Matches(v string) bool {
	s := k.State()
	return s.key != "" && trimKey(v) == s.key
}

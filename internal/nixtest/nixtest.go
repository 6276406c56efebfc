// Package nixtest holds what the tests that run real Nix commands share:
// they skip without Nix or root, name their derivations uniquely, keep Nix
// offline, and build with the host's static bash. nixstore's tests and its
// subpackages' use it.
package nixtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BashBuilder is a Nix expression for the host's static bash as a store
// path, a builder that needs no nixpkgs.
const BashBuilder = `builtins.path { path = /bin/bash-static; name = "bash"; }`

// NeedNix skips the test without Nix's tools or the static bash.
func NeedNix(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nix-store", "nix-instantiate", "nix-hash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install nix-bin)", tool)
		}
	}
	if _, err := os.Stat("/bin/bash-static"); err != nil {
		t.Skip("/bin/bash-static missing (apt-get install bash-static)")
	}
}

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to write to the Nix store")
	}
}

// Salt makes derivation names unique per test run, so tests never find
// paths left valid by earlier runs.
func Salt() string { return fmt.Sprintf("%x", time.Now().UnixNano()) }

// Out runs a command and returns its trimmed output; it fails the test,
// with the command's stderr, when the command fails.
func Out(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Offline keeps Nix from trying to reach binary caches (there is no
// network on the test machines).
func Offline(t *testing.T) {
	t.Setenv("NIX_CONFIG", "substituters =")
}

// Write writes a file with its parents and exactly mode (umask aside).
func Write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Symlink makes a symlink with its parents.
func Symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// Must fails the test on err.
func Must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// The derivation may override Nix's defaults (PATH, HOME) but not what Nix
// forces (the build directory variables, NIX_LOG_FD, TERM).
func TestEnvPrecedence(t *testing.T) {
	env := Env(map[string]string{"PATH": "/mine", "HOME": "/h", "TMPDIR": "/elsewhere", "NIX_BUILD_TOP": "/x", "foo": "bar"}, 3)
	for k, want := range map[string]string{
		"PATH": "/mine", "HOME": "/h", "foo": "bar", "NIX_BUILD_CORES": "3",
		"TMPDIR": BuildDir, "NIX_BUILD_TOP": BuildDir, "TMP": BuildDir, "PWD": BuildDir,
		"NIX_LOG_FD": "2", "TERM": "xterm-256color", "NIX_STORE": "/nix/store",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if def := Env(nil, 1); def["PATH"] != "/path-not-set" || def["HOME"] != "/homeless-shelter" {
		t.Errorf("defaults: PATH %q HOME %q", def["PATH"], def["HOME"])
	}
}

// Only the empty mount points bubblewrap made for inputs go; outputs stay.
func TestCleanMountpoints(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "store")
	os.MkdirAll(filepath.Join(store, "aaaa-input-dir"), 0o755)
	os.WriteFile(filepath.Join(store, "bbbb-input-file"), nil, 0o644)
	os.MkdirAll(filepath.Join(store, "cccc-output"), 0o755)
	os.WriteFile(filepath.Join(store, "cccc-output", "x"), []byte("x"), 0o644)
	if err := CleanMountpoints(root, []string{"/nix/store/aaaa-input-dir", "/nix/store/bbbb-input-file"}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(store)
	if len(entries) != 1 || entries[0].Name() != "cccc-output" {
		t.Fatalf("store after cleaning: %v", entries)
	}
}

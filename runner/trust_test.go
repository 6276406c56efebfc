package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cache that feeds the store must be private to its owner: another
// user's cache is refused, an open one is made 0700.
func TestCacheMustBePrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a directory owned by another user")
	}
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign")
	os.Mkdir(foreign, 0o700)
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{CacheDir: foreign}); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("a cache owned by another user was accepted: %v", err)
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	e, err := Open(Options{CacheDir: open})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache left with mode %v", fi.Mode().Perm())
	}
}

// Root (and so the hook) and other users never share a default cache.
func TestDefaultCacheIsPerUser(t *testing.T) {
	t.Setenv("NIXLAYER_CACHE", "")
	got := DefaultCacheDir()
	if os.Geteuid() == 0 && got != "/var/cache/nixlayer" {
		t.Fatalf("root's cache is %s", got)
	}
	if os.Geteuid() != 0 && strings.HasPrefix(got, "/var/cache/nixlayer") {
		t.Fatalf("a user's cache is root's: %s", got)
	}
}

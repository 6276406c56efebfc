package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The results root must sit on a path only root can change, and a user's
// directory in it, even one an earlier daemon gave the user, is root's.
func TestResultsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := resultsRoot(filepath.Join(open, "results")); err == nil || !strings.Contains(err.Error(), "another user can change") {
		t.Errorf("under a world-writable directory: %v", err)
	}
	root := filepath.Join(base, "results")
	if err := resultsRoot(root); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(root, "1001")
	if err := os.Mkdir(user, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(user, 1001, 1001); err != nil {
		t.Fatal(err)
	}
	if err := rootOwnedDir(user); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(user)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 || fi.Mode().Perm() != 0o711 {
		t.Errorf("a user's results directory is uid %d gid %d mode %v, want root's 0711", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

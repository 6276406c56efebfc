package rewrite

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A rewritten file keeps its modification time: make compares them, and a
// rewritten config.status newer than its Makefile would regenerate the
// build system during `make install`.
func TestRewriteKeepsModificationTimes(t *testing.T) {
	root := t.TempDir()
	old := "/nix/store/7q2hkbd4rm0ncxz1av5s9w8f3jilpg6y-x"
	nw := "/nix/store/vbl8f0jmzq3s6kd1xwnr29hc4ya7gip5-x"
	f := filepath.Join(root, "config.status")
	if err := os.WriteFile(f, []byte("prefix="+old+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	then := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(f, then, then)
	if _, err := (Substitution{}).Rewrite(root, map[string]string{old: nw}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(f)
	if string(data) != "prefix="+nw+"\n" {
		t.Fatalf("not rewritten: %q", data)
	}
	fi, _ := os.Stat(f)
	if !fi.ModTime().Equal(then) || fi.Mode().Perm() != 0o755 {
		t.Fatalf("rewrite changed mtime %v or mode %v", fi.ModTime(), fi.Mode().Perm())
	}
}

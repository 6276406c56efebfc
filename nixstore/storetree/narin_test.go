package storetree

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixlayer/nixlayer/internal/nixtest"
	"github.com/nixlayer/nixlayer/internal/treefile"
)

// Read through an os.Root, a tree gives the NAR hash nix-store would, and
// nothing in it (a symlink out, a FIFO) makes the reader leave it or block.
func TestNARHashInStaysInside(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	nixtest.Must(t, os.MkdirAll(filepath.Join(tree, "bin"), 0o755))
	nixtest.Must(t, os.WriteFile(filepath.Join(tree, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	nixtest.Must(t, os.WriteFile(filepath.Join(tree, "data"), []byte("data"), 0o644))
	nixtest.Must(t, os.Symlink("/etc", filepath.Join(tree, "out")))
	want, wantSize, err := NARHash(tree)
	nixtest.Must(t, err)
	root, err := os.OpenRoot(dir)
	nixtest.Must(t, err)
	defer root.Close()
	got, size, err := NARHashIn(root, "tree")
	nixtest.Must(t, err)
	if got != want || size != wantSize {
		t.Fatalf("NARHashIn = %x (%d bytes), NARHash = %x (%d bytes)", got, size, want, wantSize)
	}
	if f, _, err := treefile.Open(root, "tree/out/passwd"); err == nil {
		f.Close()
		t.Error("treefile.Open followed a symlink out of its root")
	}
	nixtest.Must(t, syscall.Mkfifo(filepath.Join(tree, "fifo"), 0o644))
	if _, _, err := treefile.Open(root, "tree/fifo"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("treefile.Open of a FIFO: %v", err)
	}
	if _, _, err := NARHashIn(root, "tree"); err == nil {
		t.Error("a FIFO in the tree was serialised")
	}
}

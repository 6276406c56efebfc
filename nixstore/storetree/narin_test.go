package storetree

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixlayer/nixlayer/internal/treefile"
)

// Read through an os.Root, a tree gives the NAR hash nix-store would, and
// nothing in it (a symlink out, a FIFO) makes the reader leave it or block.
func TestNARHashInStaysInside(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	must(t, os.MkdirAll(filepath.Join(tree, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "data"), []byte("data"), 0o644))
	must(t, os.Symlink("/etc", filepath.Join(tree, "out")))
	want, wantSize, err := NARHash(tree)
	must(t, err)
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	got, size, err := NARHashIn(root, "tree")
	must(t, err)
	if got != want || size != wantSize {
		t.Fatalf("NARHashIn = %x (%d bytes), NARHash = %x (%d bytes)", got, size, want, wantSize)
	}
	if f, _, err := treefile.Open(root, "tree/out/passwd"); err == nil {
		f.Close()
		t.Error("treefile.Open followed a symlink out of its root")
	}
	must(t, syscall.Mkfifo(filepath.Join(tree, "fifo"), 0o644))
	if _, _, err := treefile.Open(root, "tree/fifo"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("treefile.Open of a FIFO: %v", err)
	}
	if _, _, err := NARHashIn(root, "tree"); err == nil {
		t.Error("a FIFO in the tree was serialised")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

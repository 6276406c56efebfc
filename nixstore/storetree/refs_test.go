package storetree

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/nixtest"
)

func TestScanReferences(t *testing.T) {
	h := func(c string) string { return "/nix/store/" + strings.Repeat(c, 32) + "-p" + c }
	inFile, inLink, inName, split, absent := h("1"), h("2"), h("3"), h("4"), h("5")
	root := t.TempDir()
	nixtest.Write(t, filepath.Join(root, "f"), "prefix "+inFile+"/bin/sh suffix", 0o644)
	nixtest.Symlink(t, inLink+"/lib", filepath.Join(root, "l"))
	nixtest.Write(t, filepath.Join(root, strings.Repeat("3", 32)+"-name"), "", 0o644)
	// A hash straddling the 256 KiB read buffer boundary.
	pad := strings.Repeat("-", 256<<10-40)
	nixtest.Write(t, filepath.Join(root, "sub", "big"), pad+split+pad, 0o644)
	// Near misses: 31 characters, and a hash with a non-base32 letter.
	nixtest.Write(t, filepath.Join(root, "miss"), strings.Repeat("5", 31)+" "+strings.Repeat("5", 31)+"e", 0o644)
	got, err := ScanReferences(root, []string{absent, split, inName, inLink, inFile})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{inFile, inLink, inName, split}; !reflect.DeepEqual(got, want) {
		t.Errorf("ScanReferences = %q, want %q", got, want)
	}
	if _, err := ScanReferences(root, []string{"/nix/store/short"}); err == nil {
		t.Errorf("bad candidate accepted")
	}
}

func TestScannerWriteBoundaries(t *testing.T) {
	c := "/nix/store/" + strings.Repeat("a", 32) + "-x"
	data := []byte("zz" + strings.Repeat("a", 32) + "zz")
	for step := 1; step <= len(data); step++ {
		s, _ := newRefScanner([]string{c})
		for i := 0; i < len(data); i += step {
			s.Write(data[i:min(i+step, len(data))])
		}
		if got := s.found(); len(got) != 1 {
			t.Errorf("writes of %d bytes: found %q", step, got)
		}
	}
}

func TestCanonicalise(t *testing.T) {
	root := t.TempDir()
	tree := filepath.Join(root, "t")
	t.Cleanup(func() { _ = RemoveTree(tree) }) // read-only dirs, for non-root runs
	nixtest.Write(t, filepath.Join(tree, "exe"), "x", 0o4751)
	nixtest.Write(t, filepath.Join(tree, "groupexe"), "x", 0o2670)
	nixtest.Write(t, filepath.Join(tree, "plain"), "x", 0o600)
	nixtest.Symlink(t, "plain", filepath.Join(tree, "link"))
	if err := os.MkdirAll(filepath.Join(tree, "d", "e"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := Canonicalise(tree); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		"":         os.ModeDir | 0o555,
		"exe":      0o555,
		"groupexe": 0o444,
		"plain":    0o444,
		"d":        os.ModeDir | 0o555,
		"d/e":      os.ModeDir | 0o555,
	}
	for rel, mode := range want {
		fi, err := os.Lstat(filepath.Join(tree, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
		}
		if !fi.ModTime().Equal(time.Unix(1, 0)) {
			t.Errorf("%s: mtime %v, want 1", rel, fi.ModTime())
		}
	}
	fi, err := os.Lstat(filepath.Join(tree, "link"))
	if err != nil || !fi.ModTime().Equal(time.Unix(1, 0)) || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink: %v %v", fi, err)
	}
	// Idempotent; and the NAR hash is what Nix computes for the tree.
	if err := Canonicalise(tree); err != nil {
		t.Fatal(err)
	}
	if err := Canonicalise(filepath.Join(root, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing root: %v", err)
	}
}

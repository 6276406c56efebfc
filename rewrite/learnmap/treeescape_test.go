package learnmap

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/internal/gcctree"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
)

// A derivation controls its build tree: Learn and Reaches run as root on
// it and must never follow a symlink out of it, open a FIFO or a device,
// or read a huge file whole. Such entries are judged without their
// contents, in the safe direction (unexplained, unsure).
func TestBuildTreeEscapesAreNeverFollowed(t *testing.T) {
	secret := strings.Repeat("host secret bytes, never to be read by a learner. ", 4)
	outside := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	huge := func(p string) {
		t.Helper()
		write(p, "")
		if err := os.Truncate(p, treefile.MaxCompared+1); err != nil { // sparse: costs no disk
			t.Fatal(err)
		}
	}
	write(filepath.Join(outside, "secret"), secret)
	treeA, treeB := t.TempDir(), t.TempDir()
	for _, tree := range []string{treeA, treeB} {
		write(filepath.Join(tree, "store", filepath.Base(gcctree.PathB), "share", "doc"), secret) // an output holding the host's bytes
		huge(filepath.Join(tree, "build", "huge"))
	}
	// In tree B: symlinks out, /dev/zero, a FIFO where tree A has files.
	write(filepath.Join(treeA, "build", "secret"), "a")
	symlink(filepath.Join(outside, "secret"), filepath.Join(treeB, "build", "secret"))
	write(filepath.Join(treeA, "build", "zero"), "a")
	symlink("/dev/zero", filepath.Join(treeB, "build", "zero"))
	write(filepath.Join(treeA, "build", "fifo"), "a")
	if err := syscall.Mkfifo(filepath.Join(treeB, "build", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// In tree A: a directory symlinked out, whose file would explain B's.
	symlink(outside, filepath.Join(treeA, "build", "dir"))
	write(filepath.Join(treeB, "build", "dir", "secret"), secret)

	m, err := Learn(treeA, treeB, map[string]string{"out": SyntheticPath(gcctree.PathB)}, map[string]string{"out": gcctree.PathB})
	if err != nil {
		t.Fatal(err)
	}
	why := map[string]string{}
	for _, u := range m.Unexplained {
		why[u.Path] = u.Why
	}
	t.Logf("unexplained: %v", why)
	for _, p := range []string{"build/secret", "build/zero", "build/fifo", "build/dir/secret", "build/huge"} {
		if why[p] == "" {
			t.Errorf("%s is not unexplained: Learn read it through a symlink or whole", p)
		}
	}
	if !strings.Contains(why["build/huge"], "not compared") {
		t.Errorf("build/huge: %q, want it left uncompared", why["build/huge"])
	}

	// Reaches reads the unexplained entries from tree B (the symlinks are
	// still there), outputs holding the secret's bytes.
	for _, u := range []rewrite.Unexplained{{Path: "build/secret", Strays: rewrite.Strays{Offsets: []int64{0}}}, {Path: "build/zero", Strays: rewrite.Strays{Offsets: []int64{0}}}, {Path: "build/fifo", Strays: rewrite.Strays{Offsets: []int64{0}}}, {Path: "build/huge", Strays: rewrite.Strays{Offsets: []int64{0}}}} {
		reach, err := unexplained.Reaches(treeB, []rewrite.Unexplained{u}, func(p string) string { return p }, map[string]string{"out": filepath.Join(treeB, "store", filepath.Base(gcctree.PathB))})
		if err != nil {
			t.Fatal(err)
		}
		if reach[0].Rule != rewrite.RuleUnsure || reach[0].Output != "" {
			t.Errorf("%s: %+v, want unsure without reading it", u.Path, reach[0])
		}
	}
}

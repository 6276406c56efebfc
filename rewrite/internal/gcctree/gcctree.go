// Package gcctree builds the trees the rewrite packages' tests learn from
// and rewrite: a small C program compiled by gcc for a given output path
// and installed into a tree laid out like a layer, and the comparison of
// two trees as cmp sees them. Only tests import it.
package gcctree

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FixtureC copies $out followed by a short suffix into a buffer: at -O2
// gcc builds the string from overlapping 16-byte chunks, so the last chunk
// starts at the hash's last character and holds it apart from the hash.
const FixtureC = `#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
	char buf[256];
	strcpy(buf, OUT "/lib/Fixture");
	if (argc > 1)
		strcat(buf, argv[1]);
	puts(buf);
	return 0;
}
`

// FixtureDataC keeps $out in writable data, out of the mergeable constants
// LLD orders by content hash.
const FixtureDataC = `#include <stdio.h>
char libdir[] = OUT "/lib/Fixture";
int main(void) {
	puts(libdir);
	return 0;
}
`

// PathB and PathC are the reference and the target output paths. The name
// is short so that the string above is 57 bytes: its last chunk starts at
// the hash's last character.
const (
	PathB = "/nix/store/7q2hkbd4rm0ncxz1av5s9w8f3jilpg6y-x"
	PathC = "/nix/store/vbl8f0jmzq3s6kd1xwnr29hc4ya7gip5-x"
)

// Fixture says how to build and install the program.
type Fixture struct {
	Source string   // C source; FixtureC when empty
	Cflags []string // extra gcc flags, e.g. the linker or build-id
	Strip  bool     // install a stripped copy; the linker output stays in build/
	Gzip   bool     // also install a gzip'd text holding $out
}

// NeedTools skips the test unless every tool is installed.
func NeedTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

// Run runs a command in dir, failing the test when it fails.
func Run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// BuildTree builds the fixture for output path out into a fresh tree laid
// out like a layer: build/ (sources and linker output) and store/<out>/.
// All builds of a test compile in the same directory, as a sandbox does.
func BuildTree(t *testing.T, src string, fx Fixture, out string) string {
	t.Helper()
	root := t.TempDir()
	build := filepath.Join(root, "build")
	prefix := filepath.Join(root, "store", filepath.Base(out))
	for _, d := range []string{build, filepath.Join(prefix, "bin"), filepath.Join(prefix, "share")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"-O2", `-DOUT="` + out + `"`, "-o", "prog", "prog.c"}, fx.Cflags...)
	Run(t, src, "gcc", args...)
	if err := os.Rename(filepath.Join(src, "prog"), filepath.Join(build, "prog")); err != nil {
		t.Fatal(err)
	}
	if fx.Strip {
		Run(t, root, "strip", "-o", filepath.Join(prefix, "bin", "prog"), filepath.Join(build, "prog"))
	} else {
		Run(t, root, "cp", "-p", filepath.Join(build, "prog"), filepath.Join(prefix, "bin", "prog"))
	}
	info := filepath.Join(prefix, "share", "info.txt")
	if err := os.WriteFile(info, []byte("prefix="+out+"\nlibdir="+out+"/lib\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fx.Gzip {
		Run(t, root, "sh", "-c", "gzip -9 -n -c "+info+" > "+info+".gz")
	}
	if err := os.Symlink(out+"/bin/prog", filepath.Join(prefix, "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	return root
}

// NewSrc is a fresh source directory holding the fixture's prog.c.
func NewSrc(t *testing.T, fx Fixture) string {
	t.Helper()
	src := t.TempDir()
	code := fx.Source
	if code == "" {
		code = FixtureC
	}
	if err := os.WriteFile(filepath.Join(src, "prog.c"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// CopyTree is a copy of tree (cp -a) in a fresh directory.
func CopyTree(t *testing.T, tree string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "tree")
	Run(t, "/", "cp", "-a", tree, dst)
	return dst
}

// TreeDiff lists how two trees differ: entries, types, modes, symlink
// targets, and file contents as cmp sees them. Empty means identical.
func TreeDiff(t *testing.T, x, y string) []string {
	t.Helper()
	list := func(root string) map[string]os.FileInfo {
		entries := map[string]os.FileInfo{}
		err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			entries[rel] = info
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return entries
	}
	ex, ey := list(x), list(y)
	var diffs []string
	for rel, ix := range ex {
		iy, ok := ey[rel]
		switch {
		case !ok:
			diffs = append(diffs, rel+": only in "+x)
		case ix.Mode() != iy.Mode():
			diffs = append(diffs, rel+": mode "+ix.Mode().String()+" vs "+iy.Mode().String())
		case ix.Mode()&os.ModeSymlink != 0:
			tx, _ := os.Readlink(filepath.Join(x, rel))
			ty, _ := os.Readlink(filepath.Join(y, rel))
			if tx != ty {
				diffs = append(diffs, rel+": symlink "+tx+" vs "+ty)
			}
		case ix.Mode().IsRegular():
			out, err := exec.Command("cmp", filepath.Join(x, rel), filepath.Join(y, rel)).CombinedOutput()
			if err != nil {
				diffs = append(diffs, rel+": "+strings.TrimSpace(string(out)))
			}
		}
	}
	for rel := range ey {
		if _, ok := ex[rel]; !ok {
			diffs = append(diffs, rel+": only in "+y)
		}
	}
	return diffs
}

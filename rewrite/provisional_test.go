package rewrite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/rewrite/internal/gcctree"
)

// The provisional scan, without a map, gives what a clean build with the
// new path gives where the fragments are anchored: gcc's split-off last
// hash character before "-x", build-ids recomputed and carried into a
// stripped copy, symlinks; never claiming exactness.
func TestProvisionalRewriteMatchesACleanBuild(t *testing.T) {
	gcctree.NeedTools(t, "gcc", "strip", "cmp")
	for _, fx := range []gcctree.Fixture{{}, {Strip: true}, {Cflags: []string{"-Wl,--build-id=md5"}}} {
		src := gcctree.NewSrc(t, fx)
		treeB := gcctree.BuildTree(t, src, fx, gcctree.PathB)
		treeC := gcctree.BuildTree(t, src, fx, gcctree.PathC)
		tree := gcctree.CopyTree(t, treeB)
		v, err := Provisional{}.Rewrite(tree, map[string]string{gcctree.PathB: gcctree.PathC})
		if err != nil {
			t.Fatal(err)
		}
		if v.Exact || len(v.Failed) == 0 || v.Method != ProvisionalMethod {
			t.Errorf("%+v: a provisional rewrite must not claim exactness: %+v", fx, v)
		}
		if d := gcctree.TreeDiff(t, tree, treeC); len(d) > 0 {
			t.Errorf("%+v: provisional rewrite differs from a clean build with C:\n%s", fx, strings.Join(d, "\n"))
		}
	}
}

// Fragments the scan finds and leaves, in plain bytes.
func TestProvisionalScan(t *testing.T) {
	hb, hc := HashPart(gcctree.PathB), HashPart(gcctree.PathC)
	other := "/nix/store/" + hb[:1] + strings.Repeat("0", 31) + "-dep" // shares the first character only
	// Each line as it is before the scan and as the scan must leave it.
	lines := []struct{ in, want string }{
		{"whole " + gcctree.PathB + "/bin", "whole " + gcctree.PathC + "/bin"},
		{"prefix /nix/store/" + hb[:5] + "\x00", "prefix /nix/store/" + hc[:5] + "\x00"},
		{"suffix \x00" + hb[29:] + "-x/lib", "suffix \x00" + hc[29:] + "-x/lib"},
		{"seed -frandom-seed=" + hb[:10] + " ", "seed -frandom-seed=" + hc[:10] + " "},
		{"short " + hb[12:15] + " stays", "short " + hb[12:15] + " stays"},
		{"other " + other, "other " + other},
	}
	var ins, wants []string
	for _, l := range lines {
		ins, wants = append(ins, l.in), append(wants, l.want)
	}
	in, want := strings.Join(ins, "\n"), strings.Join(wants, "\n")
	root := t.TempDir()
	f := filepath.Join(root, "file")
	if err := os.WriteFile(f, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Provisional{}).Rewrite(root, map[string]string{gcctree.PathB: gcctree.PathC}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f)
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func BenchmarkProvisionalScan(b *testing.B) {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = nixbase32.Alphabet[(i*7+i/13)%len(nixbase32.Alphabet)]
	}
	pairs := []scanPair{newScanPair(gcctree.PathB, gcctree.PathC)}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		scanBytes(pairs, data)
	}
}

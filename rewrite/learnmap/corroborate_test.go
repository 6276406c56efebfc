package learnmap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/internal/gcctree"
)

// withChar is p with its hash's character k replaced by that of q.
func withChar(p, q string, k int) string {
	at := len("/nix/store/")
	b := []byte(p)
	b[at+k] = q[at+k]
	return string(b)
}

// shardTree writes a text holding path whole and, with shard, the hash's
// character 10 alone (as a tool sharding by one character of $out would).
func shardTree(t *testing.T, path string, shard bool) string {
	t.Helper()
	root := t.TempDir()
	text := "prefix=" + path + "\n"
	if shard {
		text += "shard=" + string(rewrite.HashPart(path)[10]) + "\n"
	}
	if err := os.WriteFile(filepath.Join(root, "env"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestThirdBuildCorroboratesAPairWhoseHashesAgree(t *testing.T) {
	ref := gcctree.PathB
	a := withChar(SyntheticPath(ref), ref, 10) // agrees with ref at index 10
	c := withChar(SyntheticPath(ref, a), ref, 20)
	d := SyntheticPath(ref, a, c)
	out := func(p string) map[string]string { return map[string]string{"out": p} }
	for _, shard := range []bool{false, true} {
		treeRef := shardTree(t, ref, shard)
		mA, err := Learn(shardTree(t, a, shard), treeRef, out(a), out(ref))
		if err != nil {
			t.Fatal(err)
		}
		if len(mA.Problems) == 0 {
			t.Fatal("hashes agreeing at index 10: the pair's map must say so")
		}
		mC, err := Learn(shardTree(t, c, shard), treeRef, out(c), out(ref))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Corroborate(mA, mC, out(a), out(c))
		if err != nil {
			t.Fatal(err)
		}
		// With shard, the lone character 10 is the same in a and ref:
		// only the third build sees that it depends on the path, and its
		// run joins the map.
		if len(m.Problems) != 0 || len(mA.Problems) == 0 || !m.Exact() {
			t.Fatalf("corroborated map keeps problems %v or unexplained %v (or the original lost its own)", m.Problems, m.Unexplained)
		}
		v, err := m.Apply(treeRef, out(ref), out(d))
		if err != nil || !v.Exact {
			t.Fatalf("%v %+v", err, v)
		}
		if diff := gcctree.TreeDiff(t, treeRef, shardTree(t, d, shard)); len(diff) > 0 {
			t.Fatal(diff)
		}
	}
	// A third build that agrees where the pair does sees nothing more.
	c2 := withChar(c, ref, 10)
	if err := Covered(out(a), out(c2), out(ref)); err == nil {
		t.Fatal("two builds agreeing with the reference at the same index cover it")
	}
}

// oneFileTree is a tree holding text in file f.
func oneFileTree(t *testing.T, text string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// corroborated learns the reference tree against a and c (mk builds each
// tree) and corroborates; it fails the test if a map is accepted whose
// rewrite for another path differs from that path's tree.
func corroborated(t *testing.T, mk func(p string) string, ref, a, c string) error {
	t.Helper()
	out := func(p string) map[string]string { return map[string]string{"out": p} }
	mA, err := Learn(mk(a), mk(ref), out(a), out(ref))
	if err != nil {
		t.Fatal(err)
	}
	mC, err := Learn(mk(c), mk(ref), out(c), out(ref))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Corroborate(mA, mC, out(a), out(c))
	if err != nil {
		return err
	}
	d := SyntheticPath(ref, a, c)
	tree := mk(ref)
	v, aerr := m.Apply(tree, out(ref), out(d))
	if aerr != nil {
		t.Fatal(aerr)
	}
	if diff := gcctree.TreeDiff(t, tree, mk(d)); v.Exact && len(diff) > 0 {
		t.Fatalf("a corroborated map rewrote inexactly and said exact: %v", diff)
	}
	return nil
}

func TestCorroborateCatchesAConstantBesideAFragment(t *testing.T) {
	// A fragment (hash characters 5…10) followed by a constant that equals
	// the reference hash's character 11, where the pair agrees: the pair's
	// run takes the constant in, the third build does not.
	ref := gcctree.PathB
	konst := string(rewrite.HashPart(ref)[11])
	a := withChar(SyntheticPath(ref), ref, 11)
	c := SyntheticPath(ref, a)
	mk := func(p string) string { return oneFileTree(t, "path="+p+"\nfrag="+rewrite.HashPart(p)[5:11]+konst+"\n") }
	if err := corroborated(t, mk, ref, a, c); err == nil || !strings.Contains(err.Error(), "not explained by the third build") {
		t.Fatalf("want the constant caught, got %v", err)
	}
}

func TestCorroborateCatchesATransformedCharacter(t *testing.T) {
	// A byte derived from a hash character where the pair agrees, but not
	// that character (upper-cased): the third build alone sees it differ,
	// and it stays unexplained, judged on the outputs of each resume.
	ref := gcctree.PathB
	h := rewrite.HashPart(ref)
	k := strings.IndexAny(h, "abcdfghijklmnpqrsvwxyz")
	a := withChar(SyntheticPath(ref), ref, k)
	c := SyntheticPath(ref, a)
	mk := func(p string) string {
		return oneFileTree(t, "path="+p+"\nbucket="+strings.ToUpper(string(rewrite.HashPart(p)[k]))+"\n")
	}
	out := func(p string) map[string]string { return map[string]string{"out": p} }
	mA, _ := Learn(mk(a), mk(ref), out(a), out(ref))
	mC, _ := Learn(mk(c), mk(ref), out(c), out(ref))
	m, err := Corroborate(mA, mC, out(a), out(c))
	if err != nil {
		return // refused: as good
	}
	if m.Exact() || len(m.Unexplained) != 1 || m.Unexplained[0].Path != "f" || len(m.Unexplained[0].Offsets) == 0 {
		t.Fatalf("the byte only the third build sees is not unexplained (judged on the outputs): %+v", m.Unexplained)
	}
	if err := corroborated(t, mk, ref, a, c); err != nil {
		t.Fatal(err)
	}
}

func TestCorroborateCompletesARunThePairStartsLate(t *testing.T) {
	// The pair agrees at index 0: its runs of the whole path start at 1.
	ref := gcctree.PathB
	a := withChar(SyntheticPath(ref), ref, 0)
	c := SyntheticPath(ref, a)
	mk := func(p string) string { return oneFileTree(t, "prefix="+p+"\n") }
	if err := corroborated(t, mk, ref, a, c); err != nil {
		t.Fatalf("the third build, comparing the file, completes the run: %v", err)
	}
	// A third build whose file has another size cannot: refused.
	out := func(p string) map[string]string { return map[string]string{"out": p} }
	mA, _ := Learn(mk(a), mk(ref), out(a), out(ref))
	mC, _ := Learn(oneFileTree(t, "prefix="+c+"\nmore\n"), mk(ref), out(c), out(ref))
	if _, err := Corroborate(mA, mC, out(a), out(c)); err == nil {
		t.Fatal("a run that may begin where the pair agrees was taken from a file the third build cannot compare")
	}
}

package learnmap

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/buildid"
	"github.com/nixlayer/nixlayer/rewrite/internal/gcctree"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
)

// learnAndApply builds the fixture with a synthetic path A, the reference
// path B and the target C; learns the map from A and B; rewrites a copy of
// tree B for C. It returns the map (after a JSON round trip, as the runner
// stores it), the verdict, the rewritten tree and tree C.
func learnAndApply(t *testing.T, fx gcctree.Fixture) (*rewrite.Map, rewrite.Verdict, string, string, string) {
	t.Helper()
	gcctree.NeedTools(t, "gcc", "strip", "cmp", "gzip")
	src := gcctree.NewSrc(t, fx)
	pathA := SyntheticPath(gcctree.PathB)
	treeA := gcctree.BuildTree(t, src, fx, pathA)
	treeB := gcctree.BuildTree(t, src, fx, gcctree.PathB)
	treeC := gcctree.BuildTree(t, src, fx, gcctree.PathC)
	m, err := Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": gcctree.PathB})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var stored rewrite.Map
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	tree := gcctree.CopyTree(t, treeB)
	v, err := stored.Apply(tree, map[string]string{"out": gcctree.PathB}, map[string]string{"out": gcctree.PathC})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("map: %d bytes of JSON, %+v; verdict: %+v", len(data), m.Stats, v)
	return &stored, v, tree, treeB, treeC
}

func TestFragmentedPathIsRewrittenExactly(t *testing.T) {
	m, v, tree, treeB, treeC := learnAndApply(t, gcctree.Fixture{})
	if m.Stats.Fragments == 0 {
		t.Fatalf("the fixture no longer makes gcc split the path into fragments; map: %+v", m.Stats)
	}
	if m.Stats.BuildIDs != 2 {
		t.Errorf("want the build-ids of build/prog and bin/prog in the map, got %d", m.Stats.BuildIDs)
	}
	if !v.Exact {
		t.Fatalf("verdict inexact: %v", v.Why)
	}
	if d := gcctree.TreeDiff(t, tree, treeC); len(d) > 0 {
		t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}

	// Whole-hash substitution leaves the fragment stale: not what a build
	// with C gives.
	sub := gcctree.CopyTree(t, treeB)
	if _, err := (rewrite.Substitution{}).Rewrite(sub, map[string]string{gcctree.PathB: gcctree.PathC}); err != nil {
		t.Fatal(err)
	}
	if d := gcctree.TreeDiff(t, sub, treeC); len(d) == 0 {
		t.Fatal("plain substitution gave the clean build too: the fixture does not test fragments")
	}

	// The runner's view: a Rewriter from the old paths to the new ones.
	viaRunner := gcctree.CopyTree(t, treeB)
	var rw rewrite.Rewriter = rewrite.Learned{Map: m}
	v, err := rw.Rewrite(viaRunner, map[string]string{gcctree.PathB: gcctree.PathC})
	if err != nil || !v.Exact {
		t.Fatalf("Learned.Rewrite: %v, %+v", err, v)
	}
	if d := gcctree.TreeDiff(t, viaRunner, treeC); len(d) > 0 {
		t.Fatalf("Learned.Rewrite differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}
	// A second rewrite of the rewritten tree (C → B) works from the same map.
	v, err = rw.Rewrite(viaRunner, map[string]string{gcctree.PathC: gcctree.PathB})
	if err != nil || !v.Exact {
		t.Fatalf("rewrite back: %v, %+v", err, v)
	}
	if d := gcctree.TreeDiff(t, viaRunner, treeB); len(d) > 0 {
		t.Fatalf("rewriting back differs from tree B:\n%s", strings.Join(d, "\n"))
	}
}

func TestStrippedFileTakesIDOfLinkerOutput(t *testing.T) {
	m, v, tree, _, treeC := learnAndApply(t, gcctree.Fixture{Strip: true})
	carried := false
	for _, f := range m.Files {
		if f.BuildID != nil && f.BuildID.Scheme == buildid.SchemeCarried && f.BuildID.From == "build/prog" {
			carried = true
		}
	}
	if !carried {
		t.Errorf("the stripped program should carry the id of build/prog: %+v", m.Files)
	}
	if !v.Exact {
		t.Fatalf("verdict inexact: %v", v.Why)
	}
	if d := gcctree.TreeDiff(t, tree, treeC); len(d) > 0 {
		t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}
}

func TestGNUMD5BuildID(t *testing.T) {
	m, v, tree, _, treeC := learnAndApply(t, gcctree.Fixture{Cflags: []string{"-Wl,--build-id=md5"}})
	if !v.Exact {
		t.Fatalf("verdict inexact: %v", v.Why)
	}
	if s := m.Files[0].BuildID; s == nil || s.Scheme != buildid.SchemeGNUMD5 {
		t.Errorf("want scheme %s, got %+v", buildid.SchemeGNUMD5, s)
	}
	if d := gcctree.TreeDiff(t, tree, treeC); len(d) > 0 {
		t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}
}

func TestGzipPayloadIsInexact(t *testing.T) {
	_, v, _, _, _ := learnAndApply(t, gcctree.Fixture{Gzip: true})
	if v.Exact {
		t.Fatal("a gzip'd file holding $out cannot be rewritten exactly")
	}
	want := "store/" + filepath.Base(gcctree.PathB) + "/share/info.txt.gz: gzip payload"
	if len(v.Why) != 1 || !strings.HasPrefix(v.Why[0], want) {
		t.Fatalf("want one reason starting %q, got %q", want, v.Why)
	}
}

func TestFixedBuildIDIsUnknownScheme(t *testing.T) {
	_, v, _, _, _ := learnAndApply(t, gcctree.Fixture{Cflags: []string{"-Wl,--build-id=0x0123456789abcdef0123456789abcdef01234567"}})
	if v.Exact || len(v.Why) != 2 {
		t.Fatalf("want the two files with a build-id no algorithm reproduces, got %q", v.Why)
	}
	for _, f := range []string{"build/prog", "store/" + filepath.Base(gcctree.PathB) + "/bin/prog"} {
		found := false
		for _, w := range v.Why {
			if strings.HasPrefix(w, f+": unknown build-id scheme") && strings.Contains(w, "0x") {
				found = true
			}
		}
		if !found {
			t.Errorf("want %s named with an unknown build-id scheme, got %q", f, v.Why)
		}
	}
}

func TestG3DebugStringsAreInexact(t *testing.T) {
	_, v, _, _, _ := learnAndApply(t, gcctree.Fixture{Cflags: []string{"-g3"}})
	if v.Exact {
		t.Fatal("gcc -g3 output cannot be rewritten exactly")
	}
	if why := strings.Join(v.Why, "\n"); !strings.Contains(why, "build/prog: ") || !strings.Contains(why, "gcc -g3") {
		t.Fatalf("want build/prog named with gcc -g3 as the likely cause, got %q", v.Why)
	}
}

func TestLLDBuildIDs(t *testing.T) {
	lld, err := exec.LookPath("ld.lld")
	if err != nil {
		if lld, err = exec.LookPath("ld.lld-14"); err != nil {
			t.Skip("LLD not installed (apt-get install lld-14)")
		}
	}
	// gcc finds "ld.lld" through -B.
	bin := t.TempDir()
	if err := os.Symlink(lld, filepath.Join(bin, "ld.lld")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ flag, scheme string }{
		{"", buildid.SchemeLLDFast}, // gcc passes a bare --build-id
		{"-Wl,--build-id=sha1", buildid.SchemeLLDSHA1},
		{"-Wl,--build-id=md5", buildid.SchemeLLDMD5},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			flags := []string{"-B" + bin, "-fuse-ld=lld"}
			if tc.flag != "" {
				flags = append(flags, tc.flag)
			}
			m, v, tree, _, treeC := learnAndApply(t, gcctree.Fixture{Source: gcctree.FixtureDataC, Cflags: flags, Strip: true})
			if !v.Exact {
				t.Fatalf("verdict inexact: %v", v.Why)
			}
			schemes := map[string]bool{}
			for _, f := range m.Files {
				if f.BuildID != nil {
					schemes[f.BuildID.Scheme] = true
				}
			}
			if !schemes[tc.scheme] || !schemes[buildid.SchemeCarried] {
				t.Errorf("want schemes %s and %s, got %v", tc.scheme, buildid.SchemeCarried, schemes)
			}
			if d := gcctree.TreeDiff(t, tree, treeC); len(d) > 0 {
				t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
			}
		})
	}
	// LLD places mergeable constants in an order that depends on their
	// content: the chunks of the split path move with the hash.
	t.Run("merged-constants", func(t *testing.T) {
		_, v, _, _, _ := learnAndApply(t, gcctree.Fixture{Cflags: []string{"-B" + bin, "-fuse-ld=lld"}})
		if v.Exact {
			t.Fatal("LLD orders the path's chunks by content; the rewrite cannot be exact")
		}
		if !strings.Contains(strings.Join(v.Why, "\n"), "build/prog: ") || !strings.Contains(strings.Join(v.Why, "\n"), ".rodata") {
			t.Fatalf("want build/prog named with its .rodata, got %q", v.Why)
		}
	})
}

func TestTextFileWholeHashes(t *testing.T) {
	// Text holding the path: the map finds whole hashes (and the hash
	// next to a name when a line holds only part of the path).
	pathA := SyntheticPath(gcctree.PathB)
	mk := func(p string) string {
		root := t.TempDir()
		text := "prefix=" + p + "\nhash=" + rewrite.HashPart(p)[:7] + "…\n"
		if err := os.WriteFile(filepath.Join(root, "env"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	treeA, treeB, treeC := mk(pathA), mk(gcctree.PathB), mk(gcctree.PathC)
	m, err := Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": gcctree.PathB})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.WholeHashes != 1 || m.Stats.Fragments != 1 {
		t.Errorf("want 1 whole hash and 1 fragment, got %+v", m.Stats)
	}
	v, err := m.Apply(treeB, map[string]string{"out": gcctree.PathB}, map[string]string{"out": gcctree.PathC})
	if err != nil || !v.Exact {
		t.Fatalf("%v %+v", err, v)
	}
	if d := gcctree.TreeDiff(t, treeB, treeC); len(d) > 0 {
		t.Fatal(d)
	}
	// Text (shell states) keeps plain substitution.
	if got := rewrite.Text("x="+gcctree.PathB, map[string]string{gcctree.PathB: gcctree.PathC}); got != "x="+gcctree.PathC {
		t.Errorf("Text: %q", got)
	}
}

func TestNeighboursPickTheHashPosition(t *testing.T) {
	// Hashes where the pair ('a','b') sits at indices 0 and 31: a lone
	// differing byte followed by "-x" can only be index 31.
	hA := "a" + strings.Repeat("0", 30) + "a"
	hB := "b" + strings.Repeat("1", 30) + "b"
	outs, err := outputHashes(map[string]string{"out": "/nix/store/" + hA + "-x"}, map[string]string{"out": "/nix/store/" + hB + "-x"})
	if err != nil {
		t.Fatal(err)
	}
	c := newClassifier(outs)
	fm, _, why := c.classify("f", []byte("..a-x/lib"), []byte("..b-x/lib"))
	if why != nil || fm == nil || len(fm.Runs) != 1 || fm.Runs[0].K != 31 || len(fm.Runs[0].Alt) != 0 {
		t.Fatalf("want one run at k=31, got %+v (%v)", fm, why)
	}
	// Without neighbours both fit: kept as alternatives.
	fm, _, _ = c.classify("f", []byte("..a.."), []byte("..b.."))
	if len(fm.Runs) != 1 || len(fm.Runs[0].Alt) != 1 {
		t.Fatalf("want an ambiguous run with one alternative, got %+v", fm)
	}
}

func TestHashesAgreeingAtAnIndexAreReported(t *testing.T) {
	a := "/nix/store/" + strings.Repeat("0", 32) + "-x"
	b := "/nix/store/0" + strings.Repeat("1", 31) + "-x"
	m, err := Learn(t.TempDir(), t.TempDir(), map[string]string{"out": a}, map[string]string{"out": b})
	if err != nil {
		t.Fatal(err)
	}
	if m.Exact() {
		t.Fatal("hashes that agree at index 0 hide fragments; the map must say so")
	}
}

func TestSyntheticPath(t *testing.T) {
	for _, p := range []string{gcctree.PathB, gcctree.PathC, "/nix/store/" + nixbase32.Alphabet + "-a-b", "/nix/store/00000000000000000000000000000000-y"} {
		s := SyntheticPath(p)
		h, hs := rewrite.HashPart(p), rewrite.HashPart(s)
		if len(s) != len(p) || strings.TrimPrefix(s, "/nix/store/"+hs) != strings.TrimPrefix(p, "/nix/store/"+h) {
			t.Fatalf("%s → %s: not the same name and length", p, s)
		}
		seen := map[rune]bool{}
		for k, c := range hs {
			if hs[k] == h[k] || !strings.ContainsRune(nixbase32.Alphabet, c) {
				t.Fatalf("%s → %s: index %d", p, s, k)
			}
			// Distinct characters for real hashes; 000…0 cannot have them.
			if seen[c] && !strings.HasPrefix(h, "0000") {
				t.Fatalf("%s → %s: %c repeats", p, s, c)
			}
			seen[c] = true
		}
	}
}

// A chain whose older layers were built for other output paths: the
// synthetic hash differs at every index from all of them.
func TestSyntheticPathAvoids(t *testing.T) {
	for n := 1; n <= 16; n += 3 { // chains hold a few output paths, never 32
		var avoid []string
		for i := range n {
			h := make([]byte, 32)
			for k := range h {
				h[k] = nixbase32.Alphabet[(k*7+i*13+k*k*i)%len(nixbase32.Alphabet)]
			}
			avoid = append(avoid, "/nix/store/"+string(h)+"-a")
		}
		s := SyntheticPath(gcctree.PathB, avoid...)
		for _, a := range append(avoid, gcctree.PathB) {
			ha, hs := rewrite.HashPart(a), rewrite.HashPart(s)
			for k := range hs {
				if ha[k] == hs[k] {
					t.Fatalf("%d paths to avoid: %s agrees with %s at index %d", n, s, a, k)
				}
			}
		}
	}
}

func TestPairableNeedsHashesThatDifferEverywhere(t *testing.T) {
	a := "/nix/store/" + strings.Repeat("0", 32) + "-x"
	if err := Pairable(map[string]string{"out": a}, map[string]string{"out": SyntheticPath(a)}); err != nil {
		t.Fatal(err)
	}
	b := "/nix/store/0" + strings.Repeat("1", 31) + "-x"
	if err := Pairable(map[string]string{"out": a}, map[string]string{"out": b}); err == nil {
		t.Fatal("hashes that agree at index 0 cannot teach an exact map")
	}
}

func TestResizedTextIsLocated(t *testing.T) {
	// Two builds of different derivations: the env dump of B holds a line
	// A's lacks. Its bytes are located, and followed: they reach an output
	// holding them, and no other.
	pathA := SyntheticPath(gcctree.PathB)
	mk := func(p, extra string) string {
		root := t.TempDir()
		// A hash fragment far from the line (cc-wrapper's -frandom-seed)
		// is explained: it does not widen the region.
		seed := "declare -x NIX_CFLAGS_COMPILE=\"-frandom-seed=" + rewrite.HashPart(p)[:10] + "\"\n"
		text := seed + "declare -x a=\"1\"\n" + extra + "declare -x out=\"" + p + "\"\ndeclare -x z=\"2\"\n"
		if err := os.WriteFile(filepath.Join(root, "env-vars"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	extra := "declare -x installPhase=\"make install; echo edited > $out/edited\"\n"
	treeA, treeB := mk(pathA, ""), mk(gcctree.PathB, extra)
	m, err := Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": gcctree.PathB})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Unexplained) != 1 || len(m.Unexplained[0].Offsets) == 0 || m.Unexplained[0].Bytes < len(extra) || m.Unexplained[0].Bytes > len(extra)+20 {
		t.Fatalf("want env-vars located, got %+v", m.Unexplained)
	}
	start := int64(len("declare -x NIX_CFLAGS_COMPILE=\"-frandom-seed=0123456789\"\n") + len("declare -x a=\"1\"\n"))
	if off := m.Unexplained[0].Offsets; off[0] > start+int64(len("declare -x ")) || off[len(off)-1] < start+int64(len(extra))-unexplained.NeedleLen/2 {
		t.Fatalf("offsets %v do not cover the line at %d (%d bytes)", off, start, len(extra))
	}
	resolve := func(rel string) string { return rel }
	clean, holding := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(clean, "bin"), []byte("nothing of it"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(holding, "doc"), []byte("x"+extra+"y"), 0o644); err != nil {
		t.Fatal(err)
	}
	reach, err := unexplained.Reaches(treeB, m.Unexplained, resolve, map[string]string{"out": clean})
	if err != nil || reach[0].Rule != "" {
		t.Fatalf("reaches a clean output: %+v %v", reach, err)
	}
	reach, err = unexplained.Reaches(treeB, m.Unexplained, resolve, map[string]string{"out": holding})
	if err != nil || reach[0].Rule != rewrite.RuleInstalled {
		t.Fatalf("does not reach the output holding the line: %+v %v", reach, err)
	}
}

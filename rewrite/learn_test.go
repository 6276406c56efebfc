package rewrite

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The fixture copies $out followed by a short suffix into a buffer: at -O2
// gcc builds the string from overlapping 16-byte chunks, so the last chunk
// starts at the hash's last character and holds it apart from the hash.
const fixtureC = `#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
	char buf[256];
	strcpy(buf, OUT "/lib/fixture");
	if (argc > 1)
		strcat(buf, argv[1]);
	puts(buf);
	return 0;
}
`

// fixtureDataC keeps $out in writable data, out of the mergeable constants
// LLD orders by content hash.
const fixtureDataC = `#include <stdio.h>
char libdir[] = OUT "/lib/fixture";
int main(void) {
	puts(libdir);
	return 0;
}
`

// The name is short so that the string above is 57 bytes: its last chunk
// starts at the hash's last character.
const (
	pathB = "/nix/store/7q2hkbd4rm0ncxz1av5s9w8f3jilpg6y-x"
	pathC = "/nix/store/vbl8f0jmzq3s6kd1xwnr29hc4ya7gip5-x"
)

// fixture says how to build and install the program.
type fixture struct {
	source string   // C source; fixtureC when empty
	cflags []string // extra gcc flags, e.g. the linker or build-id
	strip  bool     // install a stripped copy; the linker output stays in build/
	gzip   bool     // also install a gzip'd text holding $out
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// buildTree builds the fixture for output path out into a fresh tree laid
// out like a layer: build/ (sources and linker output) and store/<out>/.
// All builds of a test compile in the same directory, as a sandbox does.
func buildTree(t *testing.T, src string, fx fixture, out string) string {
	t.Helper()
	root := t.TempDir()
	build := filepath.Join(root, "build")
	prefix := filepath.Join(root, "store", filepath.Base(out))
	for _, d := range []string{build, filepath.Join(prefix, "bin"), filepath.Join(prefix, "share")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"-O2", `-DOUT="` + out + `"`, "-o", "prog", "prog.c"}, fx.cflags...)
	run(t, src, "gcc", args...)
	if err := os.Rename(filepath.Join(src, "prog"), filepath.Join(build, "prog")); err != nil {
		t.Fatal(err)
	}
	if fx.strip {
		run(t, root, "strip", "-o", filepath.Join(prefix, "bin", "prog"), filepath.Join(build, "prog"))
	} else {
		run(t, root, "cp", "-p", filepath.Join(build, "prog"), filepath.Join(prefix, "bin", "prog"))
	}
	info := filepath.Join(prefix, "share", "info.txt")
	if err := os.WriteFile(info, []byte("prefix="+out+"\nlibdir="+out+"/lib\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fx.gzip {
		run(t, root, "sh", "-c", "gzip -9 -n -c "+info+" > "+info+".gz")
	}
	if err := os.Symlink(out+"/bin/prog", filepath.Join(prefix, "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	return root
}

func newSrc(t *testing.T, fx fixture) string {
	t.Helper()
	src := t.TempDir()
	code := fx.source
	if code == "" {
		code = fixtureC
	}
	if err := os.WriteFile(filepath.Join(src, "prog.c"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

func copyTree(t *testing.T, tree string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "tree")
	run(t, "/", "cp", "-a", tree, dst)
	return dst
}

// treeDiff lists how two trees differ: entries, types, modes, symlink
// targets, and file contents as cmp sees them. Empty means identical.
func treeDiff(t *testing.T, x, y string) []string {
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

// learnAndApply builds the fixture with a synthetic path A, the reference
// path B and the target C; learns the map from A and B; rewrites a copy of
// tree B for C. It returns the map (after a JSON round trip, as the runner
// stores it), the verdict, the rewritten tree and tree C.
func learnAndApply(t *testing.T, fx fixture) (*Map, Verdict, string, string, string) {
	t.Helper()
	needTools(t, "gcc", "strip", "cmp", "gzip")
	src := newSrc(t, fx)
	pathA := SyntheticPath(pathB)
	treeA := buildTree(t, src, fx, pathA)
	treeB := buildTree(t, src, fx, pathB)
	treeC := buildTree(t, src, fx, pathC)
	m, err := Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": pathB})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var stored Map
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	tree := copyTree(t, treeB)
	v, err := stored.Apply(tree, map[string]string{"out": pathB}, map[string]string{"out": pathC})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("map: %d bytes of JSON, %+v; verdict: %+v", len(data), m.Stats, v)
	return &stored, v, tree, treeB, treeC
}

func TestFragmentedPathIsRewrittenExactly(t *testing.T) {
	m, v, tree, treeB, treeC := learnAndApply(t, fixture{})
	if m.Stats.Fragments == 0 {
		t.Fatalf("the fixture no longer makes gcc split the path into fragments; map: %+v", m.Stats)
	}
	if m.Stats.BuildIDs != 2 {
		t.Errorf("want the build-ids of build/prog and bin/prog in the map, got %d", m.Stats.BuildIDs)
	}
	if !v.Exact {
		t.Fatalf("verdict inexact: %v", v.Why)
	}
	if d := treeDiff(t, tree, treeC); len(d) > 0 {
		t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}

	// Whole-hash substitution leaves the fragment stale: not what a build
	// with C gives.
	sub := copyTree(t, treeB)
	if _, err := (Substitution{}).Rewrite(sub, map[string]string{pathB: pathC}); err != nil {
		t.Fatal(err)
	}
	if d := treeDiff(t, sub, treeC); len(d) == 0 {
		t.Fatal("plain substitution gave the clean build too: the fixture does not test fragments")
	}

	// The runner's view: a Rewriter from the old paths to the new ones.
	viaRunner := copyTree(t, treeB)
	var rw Rewriter = Learned{Map: m}
	v, err := rw.Rewrite(viaRunner, map[string]string{pathB: pathC})
	if err != nil || !v.Exact {
		t.Fatalf("Learned.Rewrite: %v, %+v", err, v)
	}
	if d := treeDiff(t, viaRunner, treeC); len(d) > 0 {
		t.Fatalf("Learned.Rewrite differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}
	// A second rewrite of the rewritten tree (C → B) works from the same map.
	v, err = rw.Rewrite(viaRunner, map[string]string{pathC: pathB})
	if err != nil || !v.Exact {
		t.Fatalf("rewrite back: %v, %+v", err, v)
	}
	if d := treeDiff(t, viaRunner, treeB); len(d) > 0 {
		t.Fatalf("rewriting back differs from tree B:\n%s", strings.Join(d, "\n"))
	}
}

func TestStrippedFileTakesIDOfLinkerOutput(t *testing.T) {
	m, v, tree, _, treeC := learnAndApply(t, fixture{strip: true})
	carried := false
	for _, f := range m.Files {
		if f.BuildID != nil && f.BuildID.Scheme == schemeCarried && f.BuildID.From == "build/prog" {
			carried = true
		}
	}
	if !carried {
		t.Errorf("the stripped program should carry the id of build/prog: %+v", m.Files)
	}
	if !v.Exact {
		t.Fatalf("verdict inexact: %v", v.Why)
	}
	if d := treeDiff(t, tree, treeC); len(d) > 0 {
		t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}
}

func TestGNUMD5BuildID(t *testing.T) {
	m, v, tree, _, treeC := learnAndApply(t, fixture{cflags: []string{"-Wl,--build-id=md5"}})
	if !v.Exact {
		t.Fatalf("verdict inexact: %v", v.Why)
	}
	if s := m.Files[0].BuildID; s == nil || s.Scheme != schemeGNUMD5 {
		t.Errorf("want scheme %s, got %+v", schemeGNUMD5, s)
	}
	if d := treeDiff(t, tree, treeC); len(d) > 0 {
		t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
	}
}

func TestGzipPayloadIsInexact(t *testing.T) {
	_, v, _, _, _ := learnAndApply(t, fixture{gzip: true})
	if v.Exact {
		t.Fatal("a gzip'd file holding $out cannot be rewritten exactly")
	}
	want := "store/" + filepath.Base(pathB) + "/share/info.txt.gz: gzip payload"
	if len(v.Why) != 1 || !strings.HasPrefix(v.Why[0], want) {
		t.Fatalf("want one reason starting %q, got %q", want, v.Why)
	}
}

func TestFixedBuildIDIsUnknownScheme(t *testing.T) {
	_, v, _, _, _ := learnAndApply(t, fixture{cflags: []string{"-Wl,--build-id=0x0123456789abcdef0123456789abcdef01234567"}})
	if v.Exact || len(v.Why) != 2 {
		t.Fatalf("want the two files with a build-id no algorithm reproduces, got %q", v.Why)
	}
	for _, f := range []string{"build/prog", "store/" + filepath.Base(pathB) + "/bin/prog"} {
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
	_, v, _, _, _ := learnAndApply(t, fixture{cflags: []string{"-g3"}})
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
		{"", schemeLLDFast}, // gcc passes a bare --build-id
		{"-Wl,--build-id=sha1", schemeLLDSHA1},
		{"-Wl,--build-id=md5", schemeLLDMD5},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			flags := []string{"-B" + bin, "-fuse-ld=lld"}
			if tc.flag != "" {
				flags = append(flags, tc.flag)
			}
			m, v, tree, _, treeC := learnAndApply(t, fixture{source: fixtureDataC, cflags: flags, strip: true})
			if !v.Exact {
				t.Fatalf("verdict inexact: %v", v.Why)
			}
			schemes := map[string]bool{}
			for _, f := range m.Files {
				if f.BuildID != nil {
					schemes[f.BuildID.Scheme] = true
				}
			}
			if !schemes[tc.scheme] || !schemes[schemeCarried] {
				t.Errorf("want schemes %s and %s, got %v", tc.scheme, schemeCarried, schemes)
			}
			if d := treeDiff(t, tree, treeC); len(d) > 0 {
				t.Fatalf("rewritten tree differs from a clean build with C:\n%s", strings.Join(d, "\n"))
			}
		})
	}
	// LLD places mergeable constants in an order that depends on their
	// content: the chunks of the split path move with the hash.
	t.Run("merged-constants", func(t *testing.T) {
		_, v, _, _, _ := learnAndApply(t, fixture{cflags: []string{"-B" + bin, "-fuse-ld=lld"}})
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
	pathA := SyntheticPath(pathB)
	mk := func(p string) string {
		root := t.TempDir()
		text := "prefix=" + p + "\nhash=" + hashPart(p)[:7] + "…\n"
		if err := os.WriteFile(filepath.Join(root, "env"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	treeA, treeB, treeC := mk(pathA), mk(pathB), mk(pathC)
	m, err := Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": pathB})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.WholeHashes != 1 || m.Stats.Fragments != 1 {
		t.Errorf("want 1 whole hash and 1 fragment, got %+v", m.Stats)
	}
	v, err := m.Apply(treeB, map[string]string{"out": pathB}, map[string]string{"out": pathC})
	if err != nil || !v.Exact {
		t.Fatalf("%v %+v", err, v)
	}
	if d := treeDiff(t, treeB, treeC); len(d) > 0 {
		t.Fatal(d)
	}
	// Text (shell states) keeps plain substitution.
	if got := Text("x="+pathB, map[string]string{pathB: pathC}); got != "x="+pathC {
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
	for _, p := range []string{pathB, pathC, "/nix/store/" + nixBase32 + "-a-b", "/nix/store/00000000000000000000000000000000-y"} {
		s := SyntheticPath(p)
		h, hs := hashPart(p), hashPart(s)
		if len(s) != len(p) || strings.TrimPrefix(s, "/nix/store/"+hs) != strings.TrimPrefix(p, "/nix/store/"+h) {
			t.Fatalf("%s → %s: not the same name and length", p, s)
		}
		seen := map[rune]bool{}
		for k, c := range hs {
			if hs[k] == h[k] || !strings.ContainsRune(nixBase32, c) {
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
				h[k] = nixBase32[(k*7+i*13+k*k*i)%len(nixBase32)]
			}
			avoid = append(avoid, "/nix/store/"+string(h)+"-a")
		}
		s := SyntheticPath(pathB, avoid...)
		for _, a := range append(avoid, pathB) {
			ha, hs := hashPart(a), hashPart(s)
			for k := range hs {
				if ha[k] == hs[k] {
					t.Fatalf("%d paths to avoid: %s agrees with %s at index %d", n, s, a, k)
				}
			}
		}
	}
}

func TestLLDFastChunkHash(t *testing.T) {
	// Reference values of XXH64 with seed 0 (the hand-written XXH64 that
	// xxhash.Sum64 replaced gave the same), as LLD stores them.
	for in, want := range map[string]uint64{
		"":    0xef46db3751d8e999,
		"a":   0xd24ec4f1a98c6e5b,
		"abc": 0x44bc2cf5ad770999,
		"Nobody inspects the spammish repetition": 0xfbcea83c8a378bf1,
	} {
		if got := lldFastChunkHash([]byte(in)); !bytes.Equal(got, binary.LittleEndian.AppendUint64(nil, want)) {
			t.Errorf("lldFastChunkHash(%q) = %x, want XXH64 %#x little-endian", in, got, want)
		}
	}
}

// Maps are stored with their layers and read back by later versions: an
// unexplained file keeps its flat JSON form, fields in this order.
func TestUnexplainedJSON(t *testing.T) {
	u := Unexplained{
		Path: "build/prog", Why: "1 bytes differ",
		Strays: Strays{Offsets: []int64{7}, Bytes: 1, Sections: []string{".debug_str"}, IDCovers: true},
		Cause:  CausePath, Learned: &Reach{Rule: RuleSection, Output: "debug/prog.debug"},
	}
	const want = `{"path":"build/prog","why":"1 bytes differ","offsets":[7],"bytes":1,"sections":[".debug_str"],"idCovers":true,"cause":"path","learned":{"rule":"section-survives","output":"debug/prog.debug"}}`
	data, err := json.Marshal(u)
	if err != nil || string(data) != want {
		t.Fatalf("got %s (%v)\nwant %s", data, err, want)
	}
	var back Unexplained
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back, u) {
		t.Fatalf("read back %+v (%v), want %+v", back, err, u)
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
	pathA := SyntheticPath(pathB)
	mk := func(p, extra string) string {
		root := t.TempDir()
		// A hash fragment far from the line (cc-wrapper's -frandom-seed)
		// is explained: it does not widen the region.
		seed := "declare -x NIX_CFLAGS_COMPILE=\"-frandom-seed=" + hashPart(p)[:10] + "\"\n"
		text := seed + "declare -x a=\"1\"\n" + extra + "declare -x out=\"" + p + "\"\ndeclare -x z=\"2\"\n"
		if err := os.WriteFile(filepath.Join(root, "env-vars"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	extra := "declare -x installPhase=\"make install; echo edited > $out/edited\"\n"
	treeA, treeB := mk(pathA, ""), mk(pathB, extra)
	m, err := Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": pathB})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Unexplained) != 1 || len(m.Unexplained[0].Offsets) == 0 || m.Unexplained[0].Bytes < len(extra) || m.Unexplained[0].Bytes > len(extra)+20 {
		t.Fatalf("want env-vars located, got %+v", m.Unexplained)
	}
	start := int64(len("declare -x NIX_CFLAGS_COMPILE=\"-frandom-seed=0123456789\"\n") + len("declare -x a=\"1\"\n"))
	if off := m.Unexplained[0].Offsets; off[0] > start+int64(len("declare -x ")) || off[len(off)-1] < start+int64(len(extra))-needleLen/2 {
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
	reach, err := Reaches(treeB, m.Unexplained, resolve, map[string]string{"out": clean})
	if err != nil || reach[0].Rule != "" {
		t.Fatalf("reaches a clean output: %+v %v", reach, err)
	}
	reach, err = Reaches(treeB, m.Unexplained, resolve, map[string]string{"out": holding})
	if err != nil || reach[0].Rule != RuleInstalled {
		t.Fatalf("does not reach the output holding the line: %+v %v", reach, err)
	}
}

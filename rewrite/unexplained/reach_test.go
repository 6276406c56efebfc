package unexplained_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/internal/gcctree"
	"github.com/nixlayer/nixlayer/rewrite/learnmap"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
)

// seededTree builds like nixpkgs' stdenv does for out: the objects are
// compiled with -g -O2 and -frandom-seed from out's hash (gcc records the
// seed in the debug info, and the strings around it move), linked with
// ldflags, and installed into store/<out>/bin by install (a shell command
// with $build and $bin set).
func seededTree(t *testing.T, src, out string, cflags, ldflags []string, install string) string {
	t.Helper()
	root := t.TempDir()
	build := filepath.Join(root, "build")
	bin := filepath.Join(root, "store", filepath.Base(out), "bin")
	for _, d := range []string{build, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seed := "-frandom-seed=" + filepath.Base(out)[:10]
	gcctree.Run(t, src, "gcc", append([]string{"-g", "-O2", seed, "-c", "-o", "prog.o", "prog.c"}, cflags...)...)
	gcctree.Run(t, src, "gcc", append(append([]string{"-g", "-O2", "-o", "prog", "prog.o"}, cflags...), ldflags...)...)
	for _, f := range []string{"prog.o", "prog"} {
		if err := os.Rename(filepath.Join(src, f), filepath.Join(build, f)); err != nil {
			t.Fatal(err)
		}
	}
	gcctree.Run(t, root, "sh", "-c", "build="+build+" bin="+bin+"; "+install)
	return root
}

// learnSeeded builds the seeded program twice (synthetic path, pathB),
// learns the map and judges its unexplained bytes against tree B's output.
func learnSeeded(t *testing.T, ldflags []string, install string, cflags ...string) (*rewrite.Map, []rewrite.Reach) {
	t.Helper()
	gcctree.NeedTools(t, "gcc", "strip", "gzip")
	src := gcctree.NewSrc(t, gcctree.Fixture{Source: "#include <stdio.h>\nstatic int twice(int x) { return 2 * x; }\nint main(int argc, char **argv) { (void)argv; printf(\"%d\\n\", twice(argc)); return 0; }\n"})
	pathA := learnmap.SyntheticPath(gcctree.PathB)
	treeA := seededTree(t, src, pathA, cflags, ldflags, install)
	treeB := seededTree(t, src, gcctree.PathB, cflags, ldflags, install)
	m, err := learnmap.Learn(treeA, treeB, map[string]string{"out": pathA}, map[string]string{"out": gcctree.PathB})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Unexplained) == 0 {
		t.Fatal("objects compiled -g with two seeds should differ beyond the seed's characters")
	}
	reach, err := unexplained.Reaches(treeB, m.Unexplained, func(p string) string { return p }, map[string]string{"out": filepath.Join(treeB, "store", filepath.Base(gcctree.PathB))})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range m.Unexplained {
		t.Logf("%s (%v): %+v", u, u.Sections, reach[i])
	}
	return m, reach
}

func reachOf(t *testing.T, m *rewrite.Map, reach []rewrite.Reach, path string) rewrite.Reach {
	t.Helper()
	for i, u := range m.Unexplained {
		if u.Path == path {
			return reach[i]
		}
	}
	t.Fatalf("%s has no unexplained bytes", path)
	return rewrite.Reach{}
}

// The seed's effect on the debug info is unexplained, but stripping removes
// the debug info and no build-id covers it: nothing reaches the output.
func TestStrippedSeededDebugInfoReachesNothing(t *testing.T) {
	m, reach := learnSeeded(t, []string{"-Wl,--build-id=none"}, `strip -S -p -o "$bin/prog" "$build/prog"`)
	for i, r := range reach {
		if r.Rule != "" {
			t.Errorf("%s reaches the output: %+v", m.Unexplained[i].Path, r)
		}
	}
}

// Without stripping, the program is installed as it is: its unexplained
// bytes and the object's debug sections are in the output.
func TestUnstrippedDebugInfoReachesTheOutput(t *testing.T) {
	m, reach := learnSeeded(t, []string{"-Wl,--build-id=none"}, `cp -p "$build/prog" "$bin/prog"`)
	if r := reachOf(t, m, reach, "build/prog"); r.Rule != rewrite.RuleInstalled || r.Output != "out/bin/prog" {
		t.Errorf("build/prog: want installed as out/bin/prog, got %+v", r)
	}
	if r := reachOf(t, m, reach, "build/prog.o"); r.Rule == "" {
		t.Errorf("build/prog.o: its debug sections are in out/bin/prog, got %+v", r)
	}
}

// With a GNU build-id the id is computed over the seeded debug info, and
// the stripped copy keeps it: the installed file is wrong.
func TestBuildIDOverDebugInfoReachesTheStrippedFile(t *testing.T) {
	m, reach := learnSeeded(t, []string{"-Wl,--build-id=sha1"}, `strip -S -p -o "$bin/prog" "$build/prog"`)
	if r := reachOf(t, m, reach, "build/prog"); r.Rule != rewrite.RuleBuildID || r.Output != "out/bin/prog" {
		t.Errorf("build/prog: want its build-id carried by out/bin/prog, got %+v", r)
	}
	if r := reachOf(t, m, reach, "build/prog.o"); r.Rule != "" {
		t.Errorf("build/prog.o reaches nothing by itself (it has no build-id), got %+v", r)
	}
}

// Compressed debug sections change size with the seed: the sections
// after them move, but only the debug sections are blamed, so stripping
// still leaves nothing that reaches the output.
func TestCompressedDebugSectionsBlameOnlyThemselves(t *testing.T) {
	m, reach := learnSeeded(t, []string{"-Wl,--build-id=none"}, `strip -S -p -o "$bin/prog" "$build/prog"`, "-gz")
	for i, u := range m.Unexplained {
		for _, sec := range u.Sections {
			if !strings.Contains(sec, "debug") {
				t.Errorf("%s: section %q blamed (%s)", u.Path, sec, u.Why)
			}
		}
		if reach[i].Rule != "" {
			t.Errorf("%s reaches the output: %+v", u.Path, reach[i])
		}
	}
}

// A file installed compressed is found inside the compressed output.
func TestUnexplainedBytesFoundInsideGzip(t *testing.T) {
	m, reach := learnSeeded(t, []string{"-Wl,--build-id=none"}, `strip -S -p -o "$bin/prog" "$build/prog"; gzip -n -c "$build/prog.o" > "$bin/prog.o.gz"`)
	if r := reachOf(t, m, reach, "build/prog.o"); r.Rule != rewrite.RuleInstalled || !strings.Contains(r.Output, "gzip contents") {
		t.Errorf("build/prog.o: want found in out/bin/prog.o.gz, got %+v", r)
	}
}

func TestNondeterministic(t *testing.T) {
	a := []byte("log: /build/ccAbC123.o: undefined; prefix /nix/store/AAAA-x")
	b := []byte("log: /build/ccZyX987.o: undefined; prefix /nix/store/BBBB-x")
	fm := &rewrite.FileMap{Runs: []rewrite.Run{{Off: int64(strings.Index(string(a), "AAAA")), Len: 4}}}
	rerun := []byte("log: /build/ccQwE456.o: undefined; prefix /nix/store/AAAA-x")
	if !unexplained.Nondeterministic(a, b, rerun, fm) {
		t.Error("random temporary names that change in a rerun are nondeterminism")
	}
	// One random character of the rerun repeats by chance: the cluster
	// still changes.
	rerun = []byte("log: /build/ccAbQ456.o: undefined; prefix /nix/store/AAAA-x")
	if !unexplained.Nondeterministic(a, b, rerun, fm) {
		t.Error("a cluster that changes in part is nondeterminism")
	}
	if unexplained.Nondeterministic(a, b, a, fm) {
		t.Error("bytes a rerun with the same paths reproduces depend on the paths")
	}
	// Two clusters, only one of which changes.
	a2 := []byte("log: /build/ccQwE456.o: undefined; prefix /nix/store/AAAA-x")
	b2 := append([]byte(nil), b...)
	b2[0] = 'L'
	if unexplained.Nondeterministic(a, b2, a2, fm) {
		t.Error("a cluster the rerun reproduces is a path dependence")
	}
}

package layertree

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
)

func TestTreePath(t *testing.T) {
	cases := []struct {
		in, rel string
		virtual []string
		ok      bool
	}{
		{"/", "", nil, true},
		{"", "", nil, true},
		{"/build", "build", nil, true},
		{"/build/src/../a.c", "build/a.c", nil, true},
		{"/nix", "", []string{"store"}, true},
		{"/nix/store", "store", nil, true},
		{"/nix/store/abc-hello/bin", "store/abc-hello/bin", nil, true},
		{"/tmp/x", "tmp/x", nil, true},
		{"/etc/passwd", "", nil, false},
		{"/../../etc", "", nil, false},
		{"/buildx", "", nil, false},
	}
	for _, c := range cases {
		rel, virtual, ok := treePath("/nix/store", c.in)
		if rel != c.rel || !slices.Equal(virtual, c.virtual) || ok != c.ok {
			t.Errorf("treePath(%q) = %q %v %v, want %q %v %v", c.in, rel, virtual, ok, c.rel, c.virtual, c.ok)
		}
	}
	for _, p := range []string{"/build/a", "/nix/store/abc-hello/bin/hello", "/tmp/t"} {
		rel, _, _ := treePath("/nix/store", p)
		if back := sandboxPath("/nix/store", "/"+rel); back != p {
			t.Errorf("sandboxPath(treePath(%q)) = %q", p, back)
		}
	}
}

// A layer's tree read through its Trees: listing with the store
// directory's parents, symlinks resolved inside the tree, reads in chunks,
// what a phase changed against the phase before it (through a rewrite
// layer), and a clear error once the layer is gone.
func TestLayerFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the overlay layer store needs root")
	}
	cache := t.TempDir()
	st, err := layers.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	trees := New(st, cache, zap.NewNop())
	defer trees.Close()
	out := "store/0123456789abcdfghijklmnpqrsvwxy-hello-1"
	unpack := writeLayer(t, st, "", layers.Meta{Kind: layers.KindPhase, Phase: "unpackPhase"}, map[string]string{
		"build/src/a.c":      "int main() { return 0; }\n",
		"build/src/old.txt":  "old\n",
		"build/src/link":     "->a.c",
		"build/src/abs":      "->/nix/store/0123456789abcdfghijklmnpqrsvwxy-hello-1/bin/hello",
		"build/src/outside":  "->/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-bash/bin/bash",
		out + "/bin/hello":   "#!/bin/sh\n",
		"build/src/sub/x.h":  "x\n",
		"build/src/sub/y.h":  "y\n",
		"build/src/big.data": strings.Repeat("0123456789", 100),
	})
	rewrite := writeLayer(t, st, unpack, layers.Meta{Kind: layers.KindRewrite, Status: layers.StatusDerived}, map[string]string{"build/src/sub/y.h": "Y\n"})
	build := writeLayer(t, st, rewrite, layers.Meta{Kind: layers.KindPhase, Phase: "buildPhase"}, map[string]string{
		"build/src/a.c":      "int main() { return 1; }\n",
		"build/src/a.o":      "\x7fELF",
		"-build/src/old.txt": "",
	})

	root, err := trees.Files(build, "/")
	if err != nil {
		t.Fatal(err)
	}
	if names := entryNames(root.Entries); strings.Join(names, " ") != "build nix" {
		t.Errorf("root entries %v", names)
	}
	nix, err := trees.Files(build, "/nix")
	if err != nil || strings.Join(entryNames(nix.Entries), " ") != "store" {
		t.Errorf("/nix: %v %+v", err, nix)
	}
	store, err := trees.Files(build, "/nix/store")
	if err != nil || strings.Join(entryNames(store.Entries), " ") != filepath.Base(out) {
		t.Errorf("/nix/store: %v %+v", err, store)
	}
	src, err := trees.Files(build, "/build/src")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]FileInfo{}
	for _, fi := range src.Entries {
		byName[fi.Name] = fi
	}
	if got := strings.Join(entryNames(src.Entries), " "); got != "a.c a.o abs big.data link outside sub" {
		t.Errorf("/build/src entries: %s", got)
	}
	if l := byName["link"]; l.Type != FileSymlink || l.Target != "a.c" || l.TargetType != FileRegular {
		t.Errorf("link: %+v", l)
	}
	if l := byName["abs"]; l.TargetType != FileRegular {
		t.Errorf("an absolute link into an output: %+v", l)
	}
	if l := byName["outside"]; l.Type != FileSymlink || l.TargetType != "" {
		t.Errorf("a link to an input: %+v", l)
	}
	if d := byName["sub"]; d.Type != FileDir || d.Path != "/build/src/sub" {
		t.Errorf("sub: %+v", d)
	}

	data, err := trees.Read(build, "/build/src/link", 0, 0)
	if err != nil || string(data.Data) != "int main() { return 1; }\n" || !data.EOF {
		t.Errorf("reading through a link: %v %+v", err, data)
	}
	var whole []byte
	for off := int64(0); ; {
		d, err := trees.Read(build, "/build/src/big.data", off, 300)
		if err != nil {
			t.Fatal(err)
		}
		whole = append(whole, d.Data...)
		off += int64(len(d.Data))
		if d.EOF {
			break
		}
	}
	if string(whole) != strings.Repeat("0123456789", 100) {
		t.Errorf("chunked read: %d bytes", len(whole))
	}
	if _, err := trees.Read(build, "/build/src/outside", 0, 0); err == nil || !strings.Contains(err.Error(), "not in this layer") {
		t.Errorf("reading a link to an input: %v", err)
	}
	if _, err := trees.Files(build, "/build/src/old.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a removed file: %v", err)
	}
	if _, err := trees.Files(build, "/etc/passwd"); err == nil {
		t.Error("a path outside the tree was answered")
	}

	diff, err := trees.Diff(build)
	if err != nil {
		t.Fatal(err)
	}
	if diff.Base != unpack || diff.BasePhase != "unpackPhase" || diff.Phase != "buildPhase" {
		t.Errorf("diff base %s %s phase %s", diff.Base, diff.BasePhase, diff.Phase)
	}
	var got []string
	for _, c := range diff.Changes {
		got = append(got, string(c.Kind)+" "+c.Path+" "+string(c.Type))
	}
	want := []string{"changed /build/src/a.c file", "added /build/src/a.o file", "removed /build/src/old.txt file", "changed /build/src/sub/y.h file"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes of buildPhase:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	first, err := trees.Diff(unpack)
	if err != nil || first.Base != "" || len(first.Changes) != 9 {
		t.Errorf("changes of the first phase: %v %+v", err, first)
	}
	for _, c := range first.Changes {
		if c.Kind != layers.ChangeAdded {
			t.Errorf("first phase: %+v", c)
		}
	}

	// gc removes the layer (nothing reads it any more).
	trees.Close()
	if err := st.Delete(build); err != nil {
		t.Fatal(err)
	}
	var gone *GoneError
	if _, err := trees.Files(build, "/build"); !errors.As(err, &gone) || !strings.Contains(err.Error(), "no longer in the layer cache") {
		t.Errorf("a removed layer: %v", err)
	}
	if _, err := trees.Read(build, "/build/src/a.c", 0, 0); !errors.As(err, &gone) {
		t.Errorf("reading a removed layer: %v", err)
	}
	if _, err := trees.Diff(build); !errors.As(err, &gone) {
		t.Errorf("diff of a removed layer: %v", err)
	}
}

func entryNames(fis []FileInfo) []string {
	var names []string
	for _, fi := range fis {
		names = append(names, fi.Name)
	}
	return names
}

// writeLayer makes a complete layer on parent with files ("->T" makes a
// symlink to T; a "-" before the name removes the file).
func writeLayer(t *testing.T, st *layers.Store, parent string, meta layers.Meta, files map[string]string) string {
	t.Helper()
	l, err := st.Create(parent, meta)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := st.Mount(l.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if rm, ok := strings.CutPrefix(name, "-"); ok {
			if err := os.Remove(filepath.Join(dir, rm)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Unmount(l.ID); err != nil {
		t.Fatal(err)
	}
	if meta.Status == "" {
		meta.Status = layers.StatusComplete
	}
	if err := st.Finish(l.ID, meta); err != nil {
		t.Fatal(err)
	}
	return l.ID
}

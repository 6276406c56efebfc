package layers

import (
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

func TestChainAndLookup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("layers need root (or a user namespace)")
	}
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Logf("driver %s", st.Driver())

	base, err := st.Create("", Meta{Phase: "unpackPhase"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := st.Mount(base.ID)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(p, "a"), []byte("one"), 0o644)
	st.Unmount(base.ID)
	if _, ok := st.Lookup("k1"); ok {
		t.Fatal("running layer found by key")
	}
	if err := st.Finish(base.ID, Meta{Status: StatusComplete, Key: "k1", Phase: "unpackPhase"}); err != nil {
		t.Fatal(err)
	}
	got, ok := st.Lookup("k1")
	if !ok || got.ID != base.ID {
		t.Fatalf("lookup k1 = %v %v", got, ok)
	}

	child, err := st.Create(base.ID, Meta{Phase: "buildPhase"})
	if err != nil {
		t.Fatal(err)
	}
	p, _ = st.Mount(child.ID)
	if b, err := os.ReadFile(filepath.Join(p, "a")); err != nil || string(b) != "one" {
		t.Fatalf("child does not see parent's file: %q %v", b, err)
	}
	os.WriteFile(filepath.Join(p, "a"), []byte("two"), 0o644)
	st.Unmount(child.ID)
	p, _ = st.Mount(base.ID)
	if b, _ := os.ReadFile(filepath.Join(p, "a")); string(b) != "one" {
		t.Fatalf("parent changed by child: %q", b)
	}
	st.Unmount(base.ID)

	// The child's writer "died": it must be removed, the parent kept.
	meta := child.Meta
	meta.Owner = 999999999
	st.Finish(child.ID, meta)
	meta.Status = StatusRunning
	st.s.SetMetadata(child.ID, `{"status":"running","owner":999999999}`)
	n, err := st.RemoveStale()
	if err != nil || n != 1 {
		t.Fatalf("RemoveStale = %d, %v", n, err)
	}
	if _, ok := st.Lookup("k1"); !ok {
		t.Fatal("complete layer removed")
	}
}

// Layers written before kinds were recorded get theirs from their phase
// and note.
func TestKindOfOldLayers(t *testing.T) {
	for _, c := range []struct {
		m    Meta
		want Kind
	}{
		{Meta{Kind: KindRewrite, Note: "anything"}, KindRewrite},
		{Meta{Phase: "buildPhase"}, KindPhase},
		{Meta{Note: "rewrite: learned path map"}, KindRewrite},
		{Meta{Note: "learn buildPhase"}, KindLearnScratch},
		{Meta{Note: "shell after buildPhase (kept)"}, KindShell},
	} {
		if got := c.m.KindOf(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.m, got, c.want)
		}
	}
}

// A retired (stale) layer is no cache hit any more, even for its own key,
// and says why; a new layer may take the key.
func TestRetireDropsTheKey(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("layers need root (or a user namespace)")
	}
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := st.Create("", Meta{Phase: "buildPhase"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(l.ID, Meta{Status: StatusComplete, Key: "k1", Phase: "buildPhase"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Lookup("k1"); !ok {
		t.Fatal("complete layer not found by key")
	}
	if err := st.Retire(l.ID, "stale: audit"); err != nil {
		t.Fatal(err)
	}
	if got, ok := st.Lookup("k1"); ok {
		t.Fatalf("retired layer still found by key: %+v", got)
	}
	got, err := st.Get(l.ID)
	if err != nil || got.Meta.Status != StatusStale || got.Meta.Note != "stale: audit" || got.Meta.Key != "k1" {
		t.Fatalf("retired layer: %+v %v", got, err)
	}
	again, err := st.Create("", Meta{Phase: "buildPhase"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Finish(again.ID, Meta{Status: StatusComplete, Key: "k1", Phase: "buildPhase"}); err != nil {
		t.Fatal(err)
	}
	if got, ok := st.Lookup("k1"); !ok || got.ID != again.ID {
		t.Fatalf("the rebuilt layer is not the hit: %+v %v", got, ok)
	}
}

package layers

import (
	"errors"
	"slices"
	"testing"
)

type fakeGetter map[string]*Layer

func (g fakeGetter) Get(id string) (*Layer, error) {
	if l := g[id]; l != nil {
		return l, nil
	}
	return nil, errors.New("no layer " + id)
}

func ids(ls []*Layer) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// unpack → configure → rewrite → build → shell, and a second child of configure.
func chainFixture() ([]*Layer, fakeGetter) {
	all := []*Layer{
		{ID: "u", Meta: Meta{Phase: "unpackPhase"}},
		{ID: "c", Parent: "u", Meta: Meta{Phase: "configurePhase"}},
		{ID: "r", Parent: "c", Meta: Meta{Kind: KindRewrite}},
		{ID: "b", Parent: "r", Meta: Meta{Phase: "buildPhase"}},
		{ID: "s", Parent: "b", Meta: Meta{Kind: KindShell}},
		{ID: "c2", Parent: "u", Meta: Meta{Phase: "configurePhase"}},
	}
	g := fakeGetter{}
	for _, l := range all {
		g[l.ID] = l
	}
	return all, g
}

func TestChainWalks(t *testing.T) {
	all, g := chainFixture()
	if c, err := Chain(g, "s"); err != nil || !slices.Equal(ids(c), []string{"u", "c", "r", "b", "s"}) {
		t.Errorf("Chain: %v %v", ids(c), err)
	}
	if c, err := PhaseChain(g, "s", 3); err != nil || !slices.Equal(ids(c), []string{"u", "c", "b"}) {
		t.Errorf("PhaseChain: %v %v", ids(c), err)
	}
	if c, err := PhaseChain(g, "b", 2); err != nil || !slices.Equal(ids(c), []string{"c", "b"}) {
		t.Errorf("PhaseChain of 2: %v %v", ids(c), err)
	}
	if _, err := PhaseChain(g, "b", 4); err == nil {
		t.Error("PhaseChain longer than the chain: no error")
	}
	for id, want := range map[string]string{"s": "b", "r": "c", "u": "u", "": ""} {
		l, err := NearestPhase(g, id)
		if err != nil || (l == nil) != (want == "") || l != nil && l.ID != want {
			t.Errorf("NearestPhase(%q): %v %v, want %q", id, l, err, want)
		}
	}
	delete(g, "c")
	if _, err := Chain(g, "s"); err == nil {
		t.Error("Chain with a missing layer: no error")
	}

	tr := NewTree(all)
	if got := ids(tr.Children("u")); !slices.Equal(got, []string{"c", "c2"}) {
		t.Errorf("Children: %v", got)
	}
	if got := ids(tr.Roots()); !slices.Equal(got, []string{"u"}) {
		t.Errorf("Roots: %v", got)
	}
	if got := ids(NewTree(all[2:]).Roots()); !slices.Equal(got, []string{"r", "c2"}) {
		t.Errorf("Roots of a part: %v", got)
	}
	var down []string
	tr.Down(tr.Get("b"), func(l *Layer) bool { down = append(down, l.ID); return l.ID != "c" })
	if !slices.Equal(down, []string{"b", "r", "c"}) {
		t.Errorf("Down: %v", down)
	}
	d := tr.Descendants("c")
	if len(d) != 4 || !d["c"] || !d["r"] || !d["b"] || !d["s"] || d["c2"] {
		t.Errorf("Descendants: %v", d)
	}
}

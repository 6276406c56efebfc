package access

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/results"
)

// A layer private to a user (a --from phase, a shell) and everything above
// it are that user's alone; the shared layers below stay everyone's;
// layers from before owners were recorded are nobody's; the engine's own
// user sees all.
func TestVisibility(t *testing.T) {
	alice, bob := 1001, 1002
	mk := func(id, parent string, m layers.Meta) *layers.Layer {
		return &layers.Layer{ID: id, Parent: parent, Meta: m}
	}
	phase := layers.Meta{Kind: layers.KindPhase, Status: layers.StatusComplete}
	forced := layers.Meta{Kind: layers.KindPhase, Status: layers.StatusDerived, PrivateTo: &alice}
	shell := layers.Meta{Kind: layers.KindShell, Status: layers.StatusDerived, PrivateTo: &bob}
	legacy := layers.Meta{Kind: layers.KindShell, Status: layers.StatusDerived}
	all := []*layers.Layer{
		mk("base", "", phase), mk("next", "base", phase),
		mk("forced", "next", forced), mk("above", "forced", phase),
		mk("bobshell", "next", shell), mk("old", "base", legacy),
	}
	for _, c := range []struct {
		v    *Viewer
		sees []string
	}{
		{&Viewer{UID: alice}, []string{"base", "next", "forced", "above"}},
		{&Viewer{UID: bob}, []string{"base", "next", "bobshell"}},
		{&Viewer{UID: 1003}, []string{"base", "next"}},
		{nil, []string{"base", "next", "forced", "above", "bobshell", "old"}},
	} {
		vis := Of(c.v, all)
		var got []string
		for _, l := range vis.Filter(all) {
			got = append(got, l.ID)
		}
		if len(got) != len(c.sees) {
			t.Errorf("%+v sees %v, want %v", c.v, got, c.sees)
			continue
		}
		for i := range got {
			if got[i] != c.sees[i] {
				t.Errorf("%+v sees %v, want %v", c.v, got, c.sees)
				break
			}
		}
	}
}

// fakeStore holds layers by id; "creating" exists without readable
// metadata, as a layer being created.
type fakeStore map[string]*layers.Layer

func (s fakeStore) Get(id string) (*layers.Layer, error) {
	if l := s[id]; l != nil {
		return l, nil
	}
	return nil, errors.New("layer not known")
}

func (s fakeStore) Exists(id string) bool { return s[id] != nil || id == "creating" }

// A request naming a layer: refused when it or a layer under it is
// another user's, or when it cannot be read yet; an id naming nothing
// passes (reading it says it is gone).
func TestCheck(t *testing.T) {
	alice, bob := 1001, 1002
	st := fakeStore{
		"base":   {ID: "base", Meta: layers.Meta{Kind: layers.KindPhase, Status: layers.StatusComplete}},
		"forced": {ID: "forced", Parent: "base", Meta: layers.Meta{Kind: layers.KindPhase, Status: layers.StatusDerived, PrivateTo: &alice}},
		"above":  {ID: "above", Parent: "forced", Meta: layers.Meta{Kind: layers.KindPhase, Status: layers.StatusComplete}},
		"broken": {ID: "broken", Parent: "missing", Meta: layers.Meta{Kind: layers.KindPhase, Status: layers.StatusComplete}},
	}
	for _, c := range []struct {
		id   string
		v    *Viewer
		want string // "" passes, else the error's start
	}{
		{"above", nil, ""},
		{"above", &Viewer{UID: alice}, ""},
		{"above", &Viewer{UID: bob}, "layer above is private to the user"},
		{"forced", &Viewer{UID: bob}, "layer forced is private"},
		{"base", &Viewer{UID: bob}, ""},
		{"creating", &Viewer{UID: bob}, "layer creating is private"},
		{"nothing", &Viewer{UID: bob}, ""},
		{"broken", &Viewer{UID: bob}, "layer broken is no longer in the layer cache"},
	} {
		err := Check(st, c.id, c.v)
		if (err == nil) != (c.want == "") || (err != nil && !strings.HasPrefix(err.Error(), c.want)) {
			t.Errorf("Check(%s, %+v) = %v, want %q", c.id, c.v, err, c.want)
		}
	}
}

// A result as a user sees it: their own in full, another's only when in
// the Nix store and without whose it is.
func TestResultFor(t *testing.T) {
	store := nixstore.StoreDir() + "/"
	mine := &results.Owner{UID: 1001}
	theirs := &results.Owner{UID: 1002}
	for _, c := range []struct {
		name  string
		v     *Viewer
		r     *results.Record
		shown bool
		bare  bool // shown without owner, links and results directory
	}{
		{"the engine's own user", nil, &results.Record{Owner: theirs, Outputs: map[string]string{"out": "/cache/a"}}, true, false},
		{"the caller's own", &Viewer{UID: 1001}, &results.Record{Owner: mine, Outputs: map[string]string{"out": "/cache/a"}}, true, false},
		{"another's in the store", &Viewer{UID: 1001}, &results.Record{Owner: theirs, Links: map[string]string{"out": "/home/b/result"}, ResultsDir: "/home/b/.cache", Outputs: map[string]string{"out": store + "aaaa-a"}}, true, true},
		{"another's half in the store", &Viewer{UID: 1001}, &results.Record{Owner: theirs, Outputs: map[string]string{"out": store + "aaaa-a", "dev": "/cache/a-dev"}}, false, false},
		{"another's with no outputs", &Viewer{UID: 1001}, &results.Record{Owner: theirs}, false, false},
	} {
		got := c.v.ResultFor(c.r)
		if (got != nil) != c.shown {
			t.Errorf("%s: shown %v, want %v", c.name, got != nil, c.shown)
			continue
		}
		if got != nil && c.bare && (got.Owner != nil || got.Links != nil || got.ResultsDir != "" || c.r.Owner == nil) {
			t.Errorf("%s: shown as %+v (the record itself: %+v)", c.name, got, c.r)
		}
	}
}

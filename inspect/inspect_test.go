package inspect

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
)

// fakeStore holds a listing by id; a layer id prefix finds it.
type fakeStore struct{ all []*layers.Layer }

func (s fakeStore) Get(id string) (*layers.Layer, error) {
	for _, l := range s.all {
		if l.ID == id {
			return l, nil
		}
	}
	return nil, errors.New("no such layer")
}

func (s fakeStore) FindID(prefix string) (string, bool) {
	for _, l := range s.all {
		if len(prefix) >= 4 && strings.HasPrefix(l.ID, prefix) {
			return l.ID, true
		}
	}
	return "", false
}

func (fakeStore) Size(string) int64                   { return 10 }
func (fakeStore) MountCount(string) int               { return 0 }
func (fakeStore) Data(string, string) ([]byte, error) { return nil, errors.New("none") }

// Which layer a phase means, as shell --at, mount and log choose it.
func TestChoose(t *testing.T) {
	alice := 1001
	n := 0
	mk := func(id, parent, drv, phase string, status layers.Status) *layers.Layer {
		n++
		return &layers.Layer{ID: id, Parent: parent, Created: time.Unix(int64(n), 0), Meta: layers.Meta{
			Kind: layers.KindPhase, DrvPath: "/nix/store/" + drv + "-hello-1.drv", DrvName: "hello-1", Phase: phase, Status: status}}
	}
	all := []*layers.Layer{
		mk("aaaa01", "", "a", "unpackPhase", layers.StatusComplete),
		mk("aaaa02", "aaaa01", "a", "buildPhase", layers.StatusComplete),
		mk("bbbb01", "aaaa01", "b", "buildPhase", layers.StatusFailed),
		mk("cccc01", "aaaa01", "c", "buildPhase", layers.StatusComplete),
	}
	private := mk("dddd01", "aaaa01", "d", "buildPhase", layers.StatusDerived)
	private.Meta.PrivateTo = &alice
	all = append(all, private)
	// A rewrite layer between phases: its phase is the one under it.
	rw := &layers.Layer{ID: "eeee01", Parent: "aaaa01", Meta: layers.Meta{Kind: layers.KindRewrite, Status: layers.StatusDerived, DrvName: "hello-1"}}
	all = append(all, rw)
	st := fakeStore{all: all}
	byDrv := Package{DrvPath: "/nix/store/a-hello-1.drv", Name: "hello-1"}
	byName := Package{Name: "hello-1"}
	plan := &planner.Plan{Phases: []planner.PhasePlan{
		{Name: "unpackPhase", Status: planner.StatusCached, Layer: &planner.LayerInfo{ID: "aaaa01"}},
		{Name: "buildPhase", Status: planner.StatusRun},
		{Name: "installPhase", Status: planner.StatusRun},
	}}
	cases := []struct {
		name   string
		viewer *access.Viewer
		pkg    Package
		plan   *planner.Plan
		at     string
		layer  string
		note   string // a part of the note, "" for none
		err    string
	}{
		{"the plan's cached layer", nil, byDrv, plan, "unpack", "aaaa01", "", ""},
		{"a phase the plan runs: the derivation's newest layer of it", nil, byDrv, plan, "build", "aaaa02", "earlier build whose inputs differ", ""},
		{"by name: the newest layer of the phase", nil, byName, nil, "buildPhase", "dddd01", "", ""},
		{"the newest failed build", nil, byName, nil, "failed", "bbbb01", "", ""},
		{"the newest failed build, of another derivation", nil, byDrv, plan, "failed", "bbbb01", "of another derivation", ""},
		{"a layer id prefix", nil, byName, nil, "cccc", "cccc01", "", ""},
		{"a rewrite layer by id names the phase under it", nil, byName, nil, "eeee", "eeee01", "", ""},
		{"another user's private layer is not chosen", &access.Viewer{UID: 1002}, byName, nil, "buildPhase", "cccc01", "", ""},
		{"another user's private layer by id is refused", &access.Viewer{UID: 1002}, byName, nil, "dddd", "", "", "private to the user"},
		{"its owner may have it", &access.Viewer{UID: alice}, byName, nil, "dddd", "dddd01", "", ""},
		{"a phase the package does not have", nil, byDrv, plan, "check", "", "", `has no phase "check"`},
		{"a phase no layer holds yet", nil, byDrv, plan, "install", "", "", "no layer of"},
		{"no phase named", nil, byName, nil, "", "", "", "name a phase"},
	}
	for _, c := range cases {
		visible := access.Of(c.viewer, all)
		sel, err := Choose(st, visible.Filter(all), visible, c.pkg, c.plan, c.at)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if sel.Layer.ID != c.layer || (c.note == "") != (sel.Note == "") || !strings.Contains(sel.Note, c.note) {
			t.Errorf("%s: layer %s (%s), note %q; want %s, note with %q", c.name, sel.Layer.ID, sel.Phase, sel.Note, c.layer, c.note)
		}
		if c.layer == "eeee01" && sel.Phase != "unpackPhase" {
			t.Errorf("%s: phase %q, want the one under the rewrite", c.name, sel.Phase)
		}
	}
}

// ls's rows: each chain from its base up, with the size below each layer.
func TestRows(t *testing.T) {
	all := []*layers.Layer{
		{ID: "a", Meta: layers.Meta{Kind: layers.KindPhase, DrvName: "hello-1", Status: layers.StatusComplete}},
		{ID: "b", Parent: "a", Meta: layers.Meta{Kind: layers.KindPhase, DrvName: "hello-1", Status: layers.StatusComplete}},
		{ID: "c", Meta: layers.Meta{Kind: layers.KindPhase, DrvName: "gnused-4", Status: layers.StatusFailed}},
	}
	rows := Rows(fakeStore{all: all}, all, Package{})
	var got []string
	for _, r := range rows {
		got = append(got, r.ID+"/"+r.Status)
	}
	if strings.Join(got, " ") != "c/failed a/cached b/cached" || rows[2].Shared != 10 || rows[1].Children != 1 {
		t.Errorf("rows %v (%+v)", got, rows)
	}
	if rows := Rows(fakeStore{all: all}, all, Package{Name: "hello-1"}); len(rows) != 2 {
		t.Errorf("rows of hello-1: %+v", rows)
	}
}

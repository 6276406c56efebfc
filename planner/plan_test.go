package planner

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserules"
)

// layerTable is a layer cache for planning without containers-storage:
// layers in the order they were made.
type layerTable struct{ all []*layers.Layer }

// Lookup finds the layer holding the key's name: as in the layer store,
// the one committed last.
func (t *layerTable) Lookup(key string) (*layers.Layer, bool) {
	for _, l := range slices.Backward(t.all) {
		if l.Meta.Key == key && l.Meta.Status == layers.StatusComplete {
			return l, true
		}
	}
	return nil, false
}

func (t *layerTable) Get(id string) (*layers.Layer, error) {
	for _, l := range t.all {
		if l.ID == id {
			return l, nil
		}
	}
	return nil, fmt.Errorf("layer %s: not found", id)
}

func (t *layerTable) List() ([]*layers.Layer, error) { return t.all, nil }
func (t *layerTable) Size(string) int64              { return 1 }

// build records the layers a build of in's first n phases leaves: complete
// ones, and with failed the last one failed.
func (t *layerTable) build(in Inputs, n int, failed bool) {
	p, _, err := Make(in, &layerTable{}, Options{})
	if err != nil {
		panic(err)
	}
	parent := ""
	for i, ph := range p.Phases[:n] {
		id := fmt.Sprintf("L%d", len(t.all))
		status := layers.StatusComplete
		if failed && i == n-1 {
			status = layers.StatusFailed
		}
		t.all = append(t.all, &layers.Layer{ID: id, Parent: parent, Created: time.Unix(int64(len(t.all)), 0), Meta: layers.Meta{
			Kind: layers.KindPhase, Status: status, Key: ph.Key, Phase: ph.Name, Index: i, Package: in.Pkg, Outputs: in.Outputs, Attrs: ph.KeyInputs,
		}})
		parent = id
	}
}

// resume records the layers a build of in leaves that reused the chain
// ending in phase layer reused, rewritten provisionally for its output
// paths (a rewrite layer, so the phases it ran up to n rest on an
// unverified rewrite), as another derivation of the package does.
func (t *layerTable) resume(in Inputs, reused string, n int) {
	p, _, err := Make(in, &layerTable{}, Options{})
	if err != nil {
		panic(err)
	}
	f := false
	under, err := t.Get(reused)
	if err != nil {
		panic(err)
	}
	parent := fmt.Sprintf("L%d", len(t.all))
	t.all = append(t.all, &layers.Layer{ID: parent, Parent: reused, Created: time.Unix(int64(len(t.all)), 0), Meta: layers.Meta{
		Kind: layers.KindRewrite, Status: layers.StatusDerived, Package: in.Pkg, Outputs: in.Outputs, Verified: &f,
	}})
	for i := under.Meta.Index + 1; i < n; i++ {
		ph := p.Phases[i]
		id := fmt.Sprintf("L%d", len(t.all))
		t.all = append(t.all, &layers.Layer{ID: id, Parent: parent, Created: time.Unix(int64(len(t.all)), 0), Meta: layers.Meta{
			Kind: layers.KindPhase, Status: layers.StatusComplete, Key: ph.Key, Phase: ph.Name, Index: i, Package: in.Pkg, Outputs: in.Outputs, Attrs: ph.KeyInputs, Verified: &f,
		}})
		parent = id
	}
}

var testPhases = []string{"unpackPhase", "patchPhase", "configurePhase", "buildPhase", "installPhase", "fixupPhase"}

// helloInputs are the planning inputs of a small stdenv package; edit
// changes them before planning.
func helloInputs(edit func(*Inputs)) Inputs {
	in := Inputs{
		Drv: "/nix/store/aaaa-hello.drv", Name: "hello-1.0", Pkg: "hello",
		Outputs: map[string]string{"out": "/nix/store/1111-hello-1.0"},
		Phases:  testPhases,
		Owned: map[string][]string{
			"unpackPhase":    {"src"},
			"configurePhase": {"configureFlags"},
			"buildPhase":     {"makeFlags"},
			"installPhase":   {"postInstall"},
		},
		Attrs:  map[string]string{"src": "/nix/store/2222-hello.tar.gz", "configureFlags": "--with-x", "makeFlags": "V=1", "postInstall": "echo hi"},
		Seed:   []string{"x86_64-linux", "/bin/bash", "-e\x00builder.sh", "bind:/bin/sh=/bin/sh"},
		Recipe: Digest("driver v1"),
	}
	if edit != nil {
		in.Attrs = maps.Clone(in.Attrs)
		in.Outputs = maps.Clone(in.Outputs)
		edit(&in)
	}
	return in
}

type wantPhase struct {
	status, reason, follows string
	changed                 []string
}

func TestPlanPhases(t *testing.T) {
	cached := wantPhase{status: StatusCached}
	follows := func(p string) wantPhase { return wantPhase{status: StatusRun, reason: "follows " + p, follows: p} }
	run := func(reason string, changed ...string) wantPhase {
		return wantPhase{status: StatusRun, reason: reason, changed: changed}
	}
	noBuild := run("no earlier build of this package")
	otherOutput := func(in *Inputs) { in.Outputs["out"] = "/nix/store/3333-hello-1.0" }
	for _, tc := range []struct {
		name     string
		cache    func(*layerTable) // earlier builds (of helloInputs(nil) unless they say)
		edit     func(*Inputs)     // this build's inputs
		po       Options
		want     []wantPhase
		firstRun int
		rewrite  map[string]string
		// layers are the reused layers' ids (when the case says), which
		// rest on an unverified rewrite when unverified.
		layers     []string
		unverified bool
		note       string // in what -v says of the choice
	}{
		{name: "cold cache", firstRun: 0,
			want: []wantPhase{noBuild, follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase")}},
		{name: "no change", firstRun: -1,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			want:  []wantPhase{cached, cached, cached, cached, cached, cached}},
		{name: "an installPhase edit reuses the phases before it", firstRun: 4,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit:  func(in *Inputs) { in.Attrs["postInstall"] = "echo bye" },
			want:  []wantPhase{cached, cached, cached, cached, run("postInstall changed", "postInstall"), follows("installPhase")}},
		{name: "--strict keys every phase on every attribute", firstRun: 0,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit:  func(in *Inputs) { in.Attrs["postInstall"] = "echo bye" },
			po:    Options{Strict: true},
			// The earlier build was not strict: its layer records the
			// attributes unpackPhase owned then.
			want: []wantPhase{run("--strict: configureFlags, makeFlags, postInstall changed", "configureFlags", "makeFlags", "postInstall"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase")}},
		{name: "a new attribute of configurePhase", firstRun: 2,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit: func(in *Inputs) {
				in.Attrs["cmakeFlags"] = "-G Ninja"
				in.Owned = maps.Clone(in.Owned)
				in.Owned["configurePhase"] = []string{"cmakeFlags", "configureFlags"}
			},
			want: []wantPhase{cached, cached, run("cmakeFlags changed", "cmakeFlags"), follows("configurePhase"), follows("configurePhase"), follows("configurePhase")}},
		{name: "a changed driver reruns every phase", firstRun: 0,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit:  func(in *Inputs) { in.Recipe = Digest("driver v2") },
			want:  []wantPhase{run("(nixlayer driver and sandbox) changed", keyInputsNixlayer), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase")}},
		{name: "changed sandbox paths rerun every phase", firstRun: 0,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit:  func(in *Inputs) { in.Seed = append(slices.Clone(in.Seed), "bind:/etc/hosts=/etc/hosts") },
			want:  []wantPhase{run("(inputs and sandbox) changed", keyInputsSandbox), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase")}},
		{name: "a phase that failed last time", firstRun: 3,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 4, true) },
			want:  []wantPhase{cached, cached, cached, run("failed last time"), follows("buildPhase"), follows("buildPhase")}},
		{name: "a removed layer", firstRun: 3,
			cache: func(c *layerTable) {
				c.build(helloInputs(nil), 6, false)
				c.all[3].Meta.Key = "gone"
			},
			want: []wantPhase{cached, cached, cached, run("not cached (its layer was removed or an earlier phase changed)"), follows("buildPhase"), follows("buildPhase")}},
		{name: "verified layers only", firstRun: 2, po: Options{RequireVerified: true},
			cache: func(c *layerTable) {
				c.build(helloInputs(nil), 6, false)
				f := false
				c.all[2].Meta.Verified = &f
			},
			want: []wantPhase{cached, cached, run("not cached (its layer was removed or an earlier phase changed)"), follows("configurePhase"), follows("configurePhase"), follows("configurePhase")}},
		{name: "--from reuses the newest chain before the phase", firstRun: 3, po: Options{From: "build"},
			cache: func(c *layerTable) {
				c.build(helloInputs(func(in *Inputs) { in.Attrs["configureFlags"] = "--old" }), 6, false)
			},
			want: []wantPhase{cached, cached, {status: StatusForced, reason: "reused by --from buildPhase although its inputs differ"}, run("--from buildPhase"), follows("buildPhase"), follows("buildPhase")}},
		{name: "--from with no earlier build", firstRun: 0, po: Options{From: "installPhase"},
			want: []wantPhase{run("--from installPhase: no earlier build reached it"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase"), follows("unpackPhase")}},
		{name: "reused layers built for other output paths", firstRun: 4,
			cache: func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit: func(in *Inputs) {
				otherOutput(in)
				in.Attrs["postInstall"] = "echo bye"
			},
			want:    []wantPhase{cached, cached, cached, cached, run("postInstall changed", "postInstall"), follows("installPhase")},
			rewrite: map[string]string{"/nix/store/1111-hello-1.0": "/nix/store/3333-hello-1.0"}},
		{name: "a layer resting on a provisional rewrite is not reused while an exact one has its key", firstRun: -1,
			cache: func(c *layerTable) {
				c.build(helloInputs(nil), 6, false)
				// Another derivation reused unpack and patch while this
				// one's configure ran, and committed its configure last.
				c.resume(helloInputs(func(in *Inputs) { otherOutput(in); in.Attrs["postInstall"] = "echo bye" }), "L1", 5)
			},
			want:   []wantPhase{cached, cached, cached, cached, cached, cached},
			layers: []string{"L0", "L1", "L2", "L3", "L4", "L5"},
			note:   "reusing the chain under fixupPhase L5 (verified), not configurePhase L7 (rests on a provisional or inexact rewrite), buildPhase L8 (rests on"},
		{name: "the exact chain before an unverified one with --exact", firstRun: 3, po: Options{RequireVerified: true},
			cache: func(c *layerTable) {
				c.build(helloInputs(nil), 3, false)
				c.resume(helloInputs(otherOutput), "L1", 5)
			},
			want:   []wantPhase{cached, cached, cached, run("not cached (its layer was removed or an earlier phase changed)"), follows("buildPhase"), follows("buildPhase")},
			layers: []string{"L0", "L1", "L2"}},
		{name: "a longer chain on a provisional rewrite without --exact", firstRun: 5,
			cache: func(c *layerTable) {
				c.build(helloInputs(nil), 3, false)
				c.resume(helloInputs(otherOutput), "L1", 5)
			},
			want:       []wantPhase{cached, cached, cached, cached, cached, run("no earlier build of this package")},
			layers:     []string{"L0", "L1", "L4", "L5", "L6"},
			unverified: true,
			rewrite:    map[string]string{"/nix/store/3333-hello-1.0": "/nix/store/1111-hello-1.0"}},
		{name: "a whole chain built for another output path", firstRun: -1,
			cache:   func(c *layerTable) { c.build(helloInputs(nil), 6, false) },
			edit:    otherOutput,
			want:    []wantPhase{cached, cached, cached, cached, cached, cached},
			rewrite: map[string]string{"/nix/store/1111-hello-1.0": "/nix/store/3333-hello-1.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := &layerTable{}
			if tc.cache != nil {
				tc.cache(cache)
			}
			p, firstRun, err := Make(helloInputs(tc.edit), cache, tc.po)
			if err != nil {
				t.Fatal(err)
			}
			if firstRun != tc.firstRun {
				t.Errorf("first phase to run %d, want %d", firstRun, tc.firstRun)
			}
			for i, ph := range p.Phases {
				got := wantPhase{status: ph.Status, reason: ph.Reason, follows: ph.Follows, changed: ph.Changed}
				if w := tc.want[i]; got.status != w.status || got.reason != w.reason || got.follows != w.follows || !slices.Equal(got.changed, w.changed) {
					t.Errorf("%s: %+v, want %+v", ph.Name, got, w)
				}
				if (ph.Status == StatusRun) != (ph.Layer == nil) {
					t.Errorf("%s is %s with layer %+v", ph.Name, ph.Status, ph.Layer)
				}
			}
			if tc.layers != nil {
				var got []string
				unverified := false
				for _, ph := range p.Phases {
					if ph.Layer != nil {
						got = append(got, ph.Layer.ID)
						unverified = unverified || ph.Layer.Unverified
					}
				}
				if !slices.Equal(got, tc.layers) || unverified != tc.unverified {
					t.Errorf("reuses %v (unverified %v), want %v (unverified %v)", got, unverified, tc.layers, tc.unverified)
				}
			}
			if !strings.Contains(p.ReuseNote, tc.note) {
				t.Errorf("the choice is told as %q, want it to hold %q", p.ReuseNote, tc.note)
			}
			if rw, _ := ReusedRewrite(p, firstRun); !maps.Equal(rw, tc.rewrite) {
				t.Errorf("rewrite %v, want %v", rw, tc.rewrite)
			}
		})
	}
}

// A phase's key covers the phases before it and its own attributes, never
// a later phase's.
func TestPhaseKeysChain(t *testing.T) {
	base := phaseKeys(helloInputs(nil), false)
	edited := phaseKeys(helloInputs(func(in *Inputs) { in.Attrs["makeFlags"] = "V=0" }), false)
	for i, name := range testPhases {
		if same := base[i].Key == edited[i].Key; same != (i < 3) {
			t.Errorf("%s: key unchanged %v after a makeFlags edit", name, same)
		}
	}
	if got := base[3].Attrs; !slices.Equal(got, []string{"makeFlags"}) {
		t.Errorf("buildPhase covers %v", got)
	}
	if _, ok := base[0].KeyInputs[keyInputsNixlayer]; !ok {
		t.Errorf("the first phase's key inputs do not name nixlayer's own: %v", base[0].KeyInputs)
	}
	if _, ok := base[1].KeyInputs[keyInputsNixlayer]; ok {
		t.Errorf("a later phase names nixlayer's own key input: %v", base[1].KeyInputs)
	}
	all := phaseKeys(helloInputs(nil), true)
	if got := all[1].Attrs; !slices.Equal(got, []string{"configureFlags", "makeFlags", "postInstall", "src"}) {
		t.Errorf("with every attribute patchPhase covers %v", got)
	}
}

func TestPlanWholeBuild(t *testing.T) {
	in := helloInputs(func(in *Inputs) {
		in.Phases, in.Owned, in.Whole, in.WhyWhole = []string{WholeBuild}, nil, true, "the builder is not a stdenv"
	})
	p, firstRun, err := Make(in, &layerTable{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Whole || p.WhyWhole != in.WhyWhole || len(p.Phases) != 1 || firstRun != 0 {
		t.Fatalf("whole build planned as %+v (first to run %d)", p, firstRun)
	}
	if got := p.Phases[0].Attrs; len(got) != len(in.Attrs) {
		t.Errorf("the one phase covers %v, want every attribute", got)
	}
}

func TestPlanFromUnknownPhase(t *testing.T) {
	_, _, err := Make(helloInputs(nil), &layerTable{}, Options{From: "testPhase"})
	if err == nil || !strings.Contains(err.Error(), "--from testPhase: hello-1.0 has no such phase (phases: unpackPhase patchPhase") {
		t.Fatalf("error %v", err)
	}
}

// A fallback plans a new run and leaves the plan it started from as it was
// (Result.Plan is the plan carried out, plan's answer stays true).
func TestRerunFromLeavesThePlan(t *testing.T) {
	cache := &layerTable{}
	cache.build(helloInputs(nil), 6, false)
	p, _, err := Make(helloInputs(nil), cache, Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprintf("%+v", p.Phases)
	np := RerunFrom(p, 2, "outputs would not be exact")
	if after := fmt.Sprintf("%+v", p.Phases); after != before {
		t.Fatalf("rerunFrom changed the plan:\n%s\n%s", before, after)
	}
	var got []string
	for _, ph := range np.Phases {
		got = append(got, ph.Status+":"+ph.Reason)
	}
	want := []string{"cached:", "cached:", "run:outputs would not be exact", "run:follows configurePhase", "run:follows configurePhase", "run:follows configurePhase"}
	if !slices.Equal(got, want) {
		t.Fatalf("rerun plan %v, want %v", got, want)
	}
	if np.Phases[1].Layer == nil || np.Phases[1].Layer.ID != cache.all[1].ID || np.Phases[2].Layer != nil {
		t.Errorf("rerun plan reuses %+v, then %+v", np.Phases[1].Layer, np.Phases[2].Layer)
	}
}

// The phase an edit invalidates says the rule that placed the attribute
// there, in the plan's reason and placements.
func TestPlanSaysThePlacementRule(t *testing.T) {
	placed := func(in *Inputs) {
		in.Owned = maps.Clone(in.Owned)
		in.Owned["unpackPhase"] = []string{"GREETING", "src"}
		in.Attrs["GREETING"] = "hello"
		in.Placed = map[string]phaserules.Placement{
			"GREETING":    {Phase: "unpackPhase", Rule: phaserules.RuleAny, Why: phaserules.FromFirstPhase + "programs may read any attribute"},
			"postInstall": {Phase: "installPhase", Rule: phaserules.RuleHook, Why: "a hook of installPhase"},
		}
	}
	look := &layerTable{}
	look.build(helloInputs(placed), 6, false)
	p, firstRun, err := Make(helloInputs(func(in *Inputs) { placed(in); in.Attrs["GREETING"] = "howdy" }), look, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "GREETING changed (GREETING: read from the first phase on: programs may read any attribute)"
	if firstRun != 0 || p.Phases[0].Reason != want || p.Placements["GREETING"].Rule != phaserules.RuleAny {
		t.Errorf("first run %d, reason %q, placements %v; want 0, %q", firstRun, p.Phases[0].Reason, p.Placements, want)
	}
	p, _, _ = Make(helloInputs(func(in *Inputs) { placed(in); in.Attrs["postInstall"] = "echo bye" }), look, Options{Strict: true})
	if p.Placements != nil {
		t.Errorf("--strict keys every phase on every attribute: no placements, got %v", p.Placements)
	}
}

// Package jobplan plans a prepared derivation (a phaserun.Job) against one
// cache: the derivation and the stdenv's probe give planner its inputs
// (every attribute placed in the first phase whose key covers it, the
// seed of the first key), the cache is looked up as the requesting user
// may see it (access), and the reused layers' path map predicts the
// verdict on the outputs (learn). Builds, the background work and
// `nixlayer plan` use it through runner.
package jobplan

import (
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/learn"
	"github.com/nixlayer/nixlayer/nixbuild"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
)

// Planner plans prepared derivations against one cache: the probe and the
// derivation give planner its inputs, the cache is looked up as the
// requesting user may see it, and the reused layers' path map predicts the
// verdict on the outputs. Builds, the background work and `nixlayer plan`
// use it.
type Planner struct {
	Layers  *layers.Store
	Learner *learn.Learner
	Log     *zap.Logger
}

// Plan computes the plan of a prepared job: the inputs come from the
// derivation and the probe, the planning itself (planner.Make) reads the
// cache through planner.Lookup only, and the reused layers' path map
// predicts the verdict on the outputs.
func (pn *Planner) Plan(j *phaserun.Job, po planner.Options) (*planner.Plan, error) {
	in := planner.Inputs{Drv: j.Drv.Path, Name: j.Drv.Name, Pkg: j.Pkg, Outputs: j.Drv.Outputs, Attrs: j.Attrs, Recipe: phaserun.Recipe()}
	in.Phases = []string{planner.WholeBuild}
	if j.Splittable {
		in.Phases = j.Probe.Phases
	} else {
		in.Whole, in.WhyWhole = true, j.WhyWhole
	}
	in.Owned, in.Placed = pn.placeAttributes(j, in.Phases)
	in.Seed = append([]string{j.Drv.System, j.Drv.Builder, strings.Join(j.Drv.Args, "\x00")}, phaserun.BindParts(j.Binds)...)
	for _, input := range j.UnreferencedInputs {
		in.Seed = append(in.Seed, "input:"+input)
	}
	look, err := pn.lookupFor(po.Viewer)
	if err != nil {
		return nil, err
	}
	p, firstRun, err := planner.Make(in, look, po)
	if err != nil {
		return nil, err
	}
	p.Viewer = po.Viewer
	if p.ReuseNote != "" {
		pn.Log.Debug("choosing among layers with the same key", zap.String("drv", p.Drv), zap.String("choice", p.ReuseNote))
	}
	pn.predictRewrite(p, firstRun)
	return p, nil
}

// placeAttributes assigns every attribute to the first phase whose key
// covers it, and says by which rule (phaserules.Place).
func (pn *Planner) placeAttributes(j *phaserun.Job, phases []string) (map[string][]string, map[string]phaserules.Placement) {
	owned, placed := map[string][]string{}, map[string]phaserules.Placement{}
	if !j.Splittable {
		return owned, placed
	}
	texts := nixbuild.AttrTexts(j.Drv)
	code := map[string]string{}
	for _, ph := range phases {
		if v, ok := texts[ph]; ok {
			code[ph] = v
		}
	}
	hooks := func(phase string) []string {
		var hs []string
		for _, name := range phaserules.Hooks(phase) {
			if texts[name] != "" {
				hs = append(hs, texts[name])
			}
		}
		return hs
	}
	rules := phaserules.New(phases, phaserules.PhaseReads(phases, code, stdenvFuncs(j.Probe.Funcs, texts), hooks, j.Probe.HookArrays)).
		WithOutputs(slices.Collect(maps.Keys(j.Drv.Outputs))...)
	for _, a := range slices.Sorted(maps.Keys(j.Attrs)) {
		pl := rules.Place(a)
		owned[pl.Phase] = append(owned[pl.Phase], a)
		placed[a] = pl
	}
	return owned, placed
}

// stdenvFuncs are the functions the stdenv (setup.sh and its setup hooks)
// defined in the probe, without those the package's own attributes declare
// (a preHook's helper): only the stdenv's reads may key an attribute late.
func stdenvFuncs(probed, texts map[string]string) map[string]string {
	funcs := maps.Clone(probed)
	for _, v := range texts {
		if strings.Contains(v, "()") || strings.Contains(v, "function ") {
			for _, name := range phaserules.DeclaredFuncs(v) {
				delete(funcs, name)
			}
		}
	}
	return funcs
}

// predictRewrite sets the rewrite the reused layers need and what their
// path map predicts of it.
func (pn *Planner) predictRewrite(p *planner.Plan, firstRun int) {
	rw, last := planner.ReusedRewrite(p, firstRun)
	if rw == nil {
		return
	}
	p.Rewrite = rw
	m := pn.Learner.StoredMap(p.Phases[last].Layer.ID)
	if m != nil {
		chain, _ := layers.PhaseChain(pn.Layers, p.Phases[last].Layer.ID, last+1)
		p.Exactness = pn.Learner.PredictExactness(m, chain, p.Phases)
	}
	switch {
	case m == nil:
		p.RewriteMap = "not learned"
	case m.Exact():
		p.RewriteMap = "exact"
	case len(m.Problems) > 0:
		p.RewriteMap = "inexact: " + logtail.FirstFew(m.Problems, 3)
	default:
		p.RewriteMap = "judged on the outputs: " + p.Exactness.Summary
	}
}

// lookupFor is the layer cache as v's plan may use it.
func (pn *Planner) lookupFor(v *access.Viewer) (planner.Lookup, error) {
	if v == nil {
		return pn.Layers, nil
	}
	all, err := pn.Layers.List()
	if err != nil {
		return nil, err
	}
	return access.Visible(pn.Layers, access.Of(v, all)), nil
}

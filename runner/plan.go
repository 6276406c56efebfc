package runner

import (
	"cmp"
	"context"
	"io"
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixbuild"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
)

// Plan computes the plan for a derivation without building anything but
// its inputs.
func (e *Engine) Plan(ctx context.Context, drvPath string, po planner.Options) (*planner.Plan, error) {
	j, err := e.run.Prepare(ctx, drvPath, orDiscard(po.Log))
	if err != nil {
		return nil, err
	}
	return e.plan(j, po)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// plan computes the plan of a prepared job: the inputs come from the
// derivation and the probe, the planning itself (planPhases) reads the
// cache through planner.Lookup only, and the reused layers' path map predicts
// the verdict on the outputs.
func (e *Engine) plan(j *phaserun.Job, po planner.Options) (*planner.Plan, error) {
	in := planner.Inputs{Drv: j.Drv.Path, Name: j.Drv.Name, Pkg: j.Pkg, Outputs: j.Drv.Outputs, Attrs: j.Attrs, Recipe: phaserun.Recipe()}
	in.Phases = []string{planner.WholeBuild}
	if j.Splittable {
		in.Phases = j.Probe.Phases
	} else {
		in.Whole, in.WhyWhole = true, j.WhyWhole
	}
	in.Owned, in.Placed = e.placeAttributes(j, in.Phases)
	in.Seed = append([]string{j.Drv.System, j.Drv.Builder, strings.Join(j.Drv.Args, "\x00")}, phaserun.BindParts(j.Binds)...)
	for _, input := range j.UnreferencedInputs {
		in.Seed = append(in.Seed, "input:"+input)
	}
	look, err := e.lookupFor(po.Viewer)
	if err != nil {
		return nil, err
	}
	p, firstRun, err := planner.Make(in, look, po)
	if err != nil {
		return nil, err
	}
	p.Viewer = po.Viewer
	if p.ReuseNote != "" {
		e.log.Debug("choosing among layers with the same key", zap.String("drv", p.Drv), zap.String("choice", p.ReuseNote))
	}
	e.predictRewrite(p, firstRun)
	return p, nil
}

// placeAttributes assigns every attribute to the first phase whose key
// covers it, and says by which rule (phaserules.Place).
func (e *Engine) placeAttributes(j *phaserun.Job, phases []string) (map[string][]string, map[string]phaserules.Placement) {
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
	for _, a := range sortedKeys(j.Attrs) {
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
func (e *Engine) predictRewrite(p *planner.Plan, firstRun int) {
	rw, last := planner.ReusedRewrite(p, firstRun)
	if rw == nil {
		return
	}
	p.Rewrite = rw
	m := e.learner.StoredMap(p.Phases[last].Layer.ID)
	if m != nil {
		chain, _ := layers.PhaseChain(e.layers, p.Phases[last].Layer.ID, last+1)
		p.Exactness = e.learner.PredictExactness(m, chain, p.Phases)
	}
	switch {
	case m == nil:
		p.RewriteMap = "not learned"
	case m.Exact():
		p.RewriteMap = "exact"
	case len(m.Problems) > 0:
		p.RewriteMap = "inexact: " + fewLines(m.Problems, 3)
	default:
		p.RewriteMap = "judged on the outputs: " + p.Exactness.Summary
	}
}

// sortedKeys are m's keys in order, for output that does not depend on
// map iteration.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K { return slices.Sorted(maps.Keys(m)) }

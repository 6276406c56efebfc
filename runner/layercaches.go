package runner

import (
	"context"
	"io"
	"strings"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
)

// The engine's side of the layer caches (package layercache): what a plan
// wants of them, and a new plan after a pull.

// layerCache is the engine as the layer caches need it.
func (e *Engine) layerCache() *layercache.Cache {
	return &layercache.Cache{Layers: e.layers, Dir: e.opts.CacheDir, Log: e.log, Config: func() (*layercache.Config, error) {
		cfg, err := e.config()
		if err != nil {
			return nil, err
		}
		return &cfg.Config, nil
	}}
}

// wanted is what a plan asks of the layer caches; stale are the keys an
// audit found stale here.
func wanted(j *phaserun.Job, p *planner.Plan, stale map[string]bool) layercache.Wanted {
	w := layercache.Wanted{Drv: j.Drv.Name, Phases: pullPhases(p), Outputs: j.Drv.Outputs}
	for i := range w.Phases {
		w.Phases[i].Stale = stale[w.Phases[i].Key]
	}
	return w
}

// pullPhases are a plan's phases as the layer caches see them.
func pullPhases(p *planner.Plan) []layercache.Phase {
	phases := make([]layercache.Phase, len(p.Phases))
	for i, ph := range p.Phases {
		phases[i] = layercache.Phase{Name: ph.Name, Key: ph.Key, Run: ph.Status == planner.StatusRun}
	}
	return phases
}

// firstToRun is the index of the first phase a plan runs (-1: none).
func firstToRun(p *planner.Plan) int { return layercache.FirstToRun(pullPhases(p)) }

// pullMissing pulls what the layer caches have of the phases a plan must
// run; it returns the plan to build, replanned when something was pulled.
func (e *Engine) pullMissing(ctx context.Context, j *phaserun.Job, plan *planner.Plan, po planner.Options, ro layercache.RegistryOptions, progress func(events.Event)) *planner.Plan {
	if plan.From != "" || firstToRun(plan) < 0 {
		return plan // nothing runs, or --from chose what to reuse
	}
	rep := e.layerCache().PullMissing(ctx, wanted(j, plan, e.staleKeys()), ro, po.RequireVerified, progress)
	if rep == nil {
		return plan
	}
	np, err := e.plan(j, po)
	if err != nil {
		return plan
	}
	explainAgainst(np, rep.Later, rep.Source)
	return np
}

// explainAgainst names what invalidated the first phase to run when this
// cache never built the package: the pulled chain's own record of that
// phase says which attribute differs.
func explainAgainst(p *planner.Plan, later []layers.Meta, src string) {
	f := firstToRun(p)
	if f < 0 || !strings.HasPrefix(p.Phases[f].Reason, "no earlier build") {
		return
	}
	for _, m := range later {
		if m.Phase == p.Phases[f].Name {
			ph := &p.Phases[f]
			reason, changed := planner.Explain(ph, &layers.Layer{Meta: m}, p.Strict)
			ph.Reason, ph.Changed = planner.PlacementReasons(reason, changed, p.Placements)+" (against the chain in "+src+")", changed
			return
		}
	}
}

// Pull pulls the longest chain ref's repository holds for the phases of
// drvPath this cache misses (looked up by key); with a tag in ref, the
// longest prefix of that chain whose keys this build computes.
func (e *Engine) Pull(ctx context.Context, drvPath, ref string, ro layercache.RegistryOptions, progress func(events.Event)) (*layercache.PullReport, error) {
	j, err := e.run.Prepare(ctx, drvPath, nil)
	if err != nil {
		return nil, err
	}
	plan, err := e.plan(j, planner.Options{})
	if err != nil {
		return nil, err
	}
	return e.layerCache().Pull(ctx, wanted(j, plan, nil), ref, ro, progress)
}

// Push uploads the chain that ends in top to ref (layercache.Cache.Push).
func (e *Engine) Push(ctx context.Context, top, ref string, o layercache.PushOptions) (*layercache.PushReport, error) {
	return e.layerCache().Push(ctx, top, ref, o)
}

// Export writes the chain under top as an OCI layout in dir
// (layercache.Cache.Export).
func (e *Engine) Export(ctx context.Context, top, dir, ref, secretKey string) (*layercache.ExportResult, error) {
	return e.layerCache().Export(ctx, top, dir, ref, secretKey)
}

// ExportTar exports the chain under top as a layout archive written to w
// (layercache.Cache.ExportTar).
func (e *Engine) ExportTar(ctx context.Context, top string, w io.Writer, ref, secretKey string) (*layercache.ExportResult, error) {
	return e.layerCache().ExportTar(ctx, top, w, ref, secretKey)
}

// Import recreates the chains of an OCI layout (layercache.Cache.Import).
func (e *Engine) Import(ctx context.Context, dir, ref string) ([]layercache.ImportResult, error) {
	return e.layerCache().Import(ctx, dir, ref)
}

package build

import (
	"strings"

	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
)

// Wanted is what a plan asks of the layer caches; stale are the keys an
// audit found stale here.
func Wanted(j *phaserun.Job, p *planner.Plan, stale map[string]bool) layercache.Wanted {
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

// StaleKeys are the keys of the layers an audit made stale.
func StaleKeys(st *layers.Store) map[string]bool {
	all, _ := st.List()
	keys := map[string]bool{}
	for _, l := range all {
		if l.Meta.Status == layers.StatusStale && l.Meta.Key != "" {
			keys[l.Meta.Key] = true
		}
	}
	return keys
}

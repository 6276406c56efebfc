package learn

import (
	"context"
	"fmt"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite/learnmap"
)

// FullIfFaster, for the hook (exact, never slower than Nix): when the
// reused layers have no path map, plan a full build with the new output
// paths, which learns the map from the pair (pair.go). Three cases resume
// instead: a layer with the top's key built with other output paths
// teaches the map at once (an earlier rebuild's pair: mapFromPair); a
// learner already at work on this chain ends, by the last learning
// measured, before that build would (the resume waits for its map); or the
// pair that build would make cannot teach the map (its output hashes agree
// with the older chain's at an index, about two times in three), so the
// build learns it in front: the reused phases run once more with a
// synthetic path, which costs what a full build costs, and the edit after
// this one resumes from the map (learnInFront). No estimate of background
// work stands in for a measurement. It returns the plan to build.
func (lr *Learner) FullIfFaster(ctx context.Context, j *phaserun.Job, plan *planner.Plan, progress func(events.Event)) *planner.Plan {
	top := plan.LastReused()
	if top == "" || lr.StoredMap(top) != nil || lr.Fixed {
		return plan
	}
	if lr.MapFromPair(ctx, plan, j.Pkg, top, false, progress) != nil {
		return plan // the resume finds the map
	}
	_, took := planner.PreviousChain(lr.Layers, j.Pkg)
	var reused, later time.Duration
	nReused := 0
	for _, ph := range plan.Phases {
		d := took[ph.Name]
		if ph.Layer != nil {
			d = ph.Layer.Duration
		}
		if ph.Status == planner.StatusRun {
			later += d
		} else {
			reused += d
			nReused++
		}
	}
	full := reused + later
	learnLeft := time.Duration(-1)
	learner := results.Learner(lr.CacheDir, j.Pkg)
	if learner != nil && learner.Learning.Covers(top) && learner.Learning.Estimate > 0 {
		learnLeft = max(0, time.Until(learner.Learning.Started.Add(learner.Learning.Estimate)))
	}
	cannotTeach := lr.rebuildCannotTeach(top, j.Drv.Outputs)
	why := fmt.Sprintf("no path map for the reused layers yet: building every phase with the new output paths (about %s), which learns the map from this build", events.Duration(full))
	switch chooseWithoutMap(reused, later, learnLeft, cannotTeach == nil) {
	case waitForLearner:
		progress(events.Event{Kind: events.EventWait, Message: fmt.Sprintf("the background learner ends in about %s by the last learning measured: resuming with its map (about %s) is faster than building every phase (about %s)", events.Duration(learnLeft), events.Duration(learnLeft+later), events.Duration(full))})
		return plan // the resume waits for the map (pathMap) and still wins
	case learnInFront:
		plan.LearnInFront = true
		progress(events.Event{Kind: events.EventLearn, Message: fmt.Sprintf("no path map for the reused layers yet, and a build with these output paths could not teach it (%v): running the %d reused phases once more with a synthetic path to learn it, then resuming (about %s in all, as a full build)", cannotTeach, nReused, events.Duration(full))})
		return plan
	}
	switch {
	case learner != nil && learner.Learning.Covers(top) && learner.Learning.Estimate == 0:
		why += "; the background learner has no measured estimate to wait for"
	case learnLeft >= 0:
		why += fmt.Sprintf(", is faster than waiting for the background learner (about %s by the last learning measured)", events.Duration(learnLeft+later))
	}
	rebuild := planner.RerunFrom(plan, 0, why)
	rebuild.Rewrite, rebuild.RewriteMap, rebuild.Exactness = nil, "", nil
	progress(events.Event{Kind: events.EventFallback, Message: why})
	return rebuild
}

// noMapChoice is how the hook builds an edit whose reused layers have no
// path map (FullIfFaster).
type noMapChoice int

const (
	// rebuildInFull: every phase with the new output paths, as Nix would;
	// the pair it makes with the older chain teaches the map.
	rebuildInFull noMapChoice = iota
	// waitForLearner: resume once the learner at work on the chain stores
	// the map, which by the last learning measured ends sooner.
	waitForLearner
	// learnInFront: the reused phases once more with a synthetic path,
	// then resume: as long as a full build, and it leaves the map that
	// a full build's pair could not teach.
	learnInFront
)

// chooseWithoutMap decides from measured times: reused and later are the
// build times of the reused phases and of those that run, learnLeft the
// time the learner at work on the chain has left by the last learning
// measured (negative: none, or no measure), pairTeaches whether a full
// build's pair with the older chain would teach the map.
func chooseWithoutMap(reused, later, learnLeft time.Duration, pairTeaches bool) noMapChoice {
	switch {
	case learnLeft >= 0 && learnLeft+later < reused+later:
		return waitForLearner
	case pairTeaches:
		return rebuildInFull
	default:
		return learnInFront
	}
}

// rebuildCannotTeach says why a full build with outputs would not learn
// the map of the layer top's phase from the pair it makes (learnFromPair);
// nil when it would.
func (lr *Learner) rebuildCannotTeach(top string, outputs map[string]string) error {
	l, err := lr.Layers.Get(top)
	if err != nil {
		return err
	}
	if lr.TwinsWith(l.Meta.Key, "", outputs) != nil {
		return nil
	}
	if err := learnmap.Pairable(l.Meta.Outputs, outputs); err != nil {
		return err
	}
	return fmt.Errorf("no verified build of %s to pair with", l.Meta.Phase)
}

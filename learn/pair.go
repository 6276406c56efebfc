package learn

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/learnmap"
)

// A build that reran phases whose keys match an older chain built with
// other output paths (the hook's full build after an edit, an exact
// fallback) made for them exactly what learning needs: the same phases
// with the same inputs and other output paths. The path map is learned
// from that pair, and no twin runs for those phases. When the pair's
// hashes agree at an index, a third build of those phases that differs
// there corroborates it (learnmap.Corroborate).

// LearnFromPair compares the newest layer this build created that has an
// older twin (same key, verified, other output paths) with that twin and
// stores the map on it: the layer a resume after the next edit of the
// phase that follows starts from. It reports whether a map was stored.
// Only the top of the matching prefix is compared here: one tree
// comparison, not one per phase; the layers under it learn theirs when a
// resume first needs them (mapFromPair).
func (lr *Learner) LearnFromPair(ctx context.Context, plan *planner.Plan, created []string, progress func(events.Event)) bool {
	if len(created) == 0 || lr.Fixed {
		return false
	}
	mine := map[string]bool{}
	for _, id := range created {
		mine[id] = true
	}
	byKey := lr.olderTwins(mine)
	var newTop, oldTop *layers.Layer
	for _, id := range created {
		l, err := lr.Layers.Get(id)
		if err != nil || l.Meta.KindOf() != layers.KindPhase {
			break
		}
		o := byKey[l.Meta.Key]
		if o == nil || maps.Equal(o.Meta.Outputs, l.Meta.Outputs) {
			break
		}
		newTop, oldTop = l, o
	}
	if newTop == nil || lr.StoredMap(newTop.ID) != nil {
		return false
	}
	twins := lr.twinsFor(newTop)
	if twins == nil {
		lr.Log.Debug("this rebuild cannot teach the path map of its reruns (output hashes agree at an index); the background learner will", zap.String("older chain's layer", oldTop.ID))
		return false
	}
	return lr.learnFromTwins(ctx, plan, twins, newTop, "this rebuild and the chain it replaces", progress) != nil
}

// MapFromPair is the lazy form of learnFromPair, for a resume whose reused
// top has no map: when a layer with its key was built with other output
// paths that pair with its own (the older chain of a rebuild), the map is
// learned from the two trees, one comparison, instead of a twin build or a
// provisional rewrite. So an edit of any phase in the prefix a rebuild
// shares with the chain it replaced resumes, not only the edit after the
// top of that prefix. nil when no such twin exists, when they cannot teach
// it (remembered for this process and these twins), or, unless the caller holds it
// (locked), when the package's learn lock is busy: storing maps beside a
// learner would lose one of them, and a build does not wait for one.
func (lr *Learner) MapFromPair(ctx context.Context, plan *planner.Plan, pkg, top string, locked bool, progress func(events.Event)) *rewrite.Map {
	if lr.Fixed {
		return nil
	}
	l, err := lr.Layers.Get(top)
	if err != nil || l.Meta.KindOf() != layers.KindPhase || !l.Meta.IsVerified() {
		return nil
	}
	twins := lr.twinsFor(l)
	if twins == nil {
		return nil
	}
	// Remembered by the twins compared: a later build of the layer (a
	// long-lived daemon sees one) may pair where these did not.
	tried := top
	for _, t := range twins {
		tried += " " + t.ID
	}
	if _, failed := lr.unpaired.Load(tried); failed {
		return nil
	}
	if !locked {
		unlock, ok := lr.Locks.Try(cachelock.Learn, pkg)
		if !ok {
			return nil
		}
		defer unlock()
		if m := lr.StoredMap(top); m != nil { // learned meanwhile
			return m
		}
	}
	m := lr.learnFromTwins(ctx, plan, twins, l, "two builds of the chain with other output paths", progress)
	if m == nil {
		lr.unpaired.Store(tried, true)
	}
	return m
}

// twinsFor finds the layers that can teach l's map: complete, verified
// phase layers with l's key built with other output paths. One whose
// hashes differ from l's at every index is enough (learnmap.Pairable);
// otherwise two whose agreements with l never fall on the same index, the
// second to corroborate what the first teaches (learnmap.Covered). nil when
// none can.
func (lr *Learner) twinsFor(l *layers.Layer) []*layers.Layer {
	return lr.TwinsWith(l.Meta.Key, l.ID, l.Meta.Outputs)
}

// TwinsWith is twinsFor for a layer with key and outputs (other than the
// layer exclude), built or not: a rebuild with outputs learns the map
// from the pair it makes only when twinsWith finds its twins.
func (lr *Learner) TwinsWith(key, exclude string, outputs map[string]string) []*layers.Layer {
	if key == "" {
		return nil
	}
	all, err := lr.Layers.List()
	if err != nil {
		return nil
	}
	return twinsAmong(all, key, exclude, outputs)
}

// twinsAmong is twinsWith over the layers all (oldest first), listed by
// the caller.
func twinsAmong(all []*layers.Layer, key, exclude string, outputs map[string]string) []*layers.Layer {
	if key == "" {
		return nil
	}
	var cands []*layers.Layer
	for i := len(all) - 1; i >= 0; i-- { // newest first
		o := all[i]
		if o.ID == exclude || o.Meta.Key != key || o.Meta.KindOf() != layers.KindPhase || o.Meta.Status != layers.StatusComplete || !o.Meta.IsVerified() || maps.Equal(o.Meta.Outputs, outputs) {
			continue
		}
		if learnmap.Pairable(o.Meta.Outputs, outputs) == nil {
			return []*layers.Layer{o}
		}
		cands = append(cands, o)
	}
	for i, a := range cands {
		for _, c := range cands[i+1:] {
			if !maps.Equal(a.Meta.Outputs, c.Meta.Outputs) && learnmap.Covered(a.Meta.Outputs, c.Meta.Outputs, outputs) == nil {
				return []*layers.Layer{a, c}
			}
		}
	}
	return nil
}

// learnFromTwins learns the map of newTop from its twins (twinsFor),
// stores it, records the reach of the bytes it cannot explain, and says
// so; nil when learning failed or the second twin saw what the first
// missed (logged: the caller goes on without the map).
func (lr *Learner) learnFromTwins(ctx context.Context, plan *planner.Plan, twins []*layers.Layer, newTop *layers.Layer, from string, progress func(events.Event)) *rewrite.Map {
	t0 := time.Now()
	m, err := lr.learnPair(twins[0], newTop)
	if err == nil && len(twins) == 2 {
		var other *rewrite.Map
		if other, err = lr.learnPair(twins[1], newTop); err == nil {
			m, err = learnmap.Corroborate(m, other, twins[0].Meta.Outputs, twins[1].Meta.Outputs)
		}
		if err != nil {
			err = fmt.Errorf("corroborating the path map of %s with a third build: %w", newTop.Meta.Phase, err)
		}
	}
	if err == nil {
		err = lr.storeMap(newTop.ID, m)
	}
	if err != nil {
		lr.Log.Warn("learning the path map from other builds of the chain", zap.Error(err))
		progress(events.Event{Kind: events.EventLearned, Message: "path map not learned from " + from + ": " + err.Error()})
		return nil
	}
	if len(twins) == 2 {
		from += ", corroborated by a third build (the pair's hashes agree at an index)"
	}
	chain, err := layers.PhaseChain(lr.Layers, newTop.ID, newTop.Meta.Index+1)
	if err == nil {
		// No reruns here: the unexplained bytes' reach is recorded, their
		// cause stays unknown (judged on the outputs of each resume).
		err = lr.judgeLearned(ctx, nil, plan, chain, nil, nil, false, progress)
	}
	if err != nil {
		lr.Log.Warn("judging the unexplained bytes of a map learned from two builds", zap.Error(err))
	}
	if stored := lr.StoredMap(newTop.ID); stored != nil {
		m = stored // with the reach judgeLearned recorded
	}
	how := "exact"
	if !m.Exact() {
		how = fmt.Sprintf("%d file(s) it cannot explain are judged on the outputs of each resume", len(m.Unexplained)+len(m.Problems))
	}
	progress(events.Event{Kind: events.EventLearned, Elapsed: time.Since(t0), Message: fmt.Sprintf("path map learned from %s, up to %s, in %s (%s); no twin build needed", from, newTop.Meta.Phase, events.Duration(time.Since(t0)), how)})
	return m
}

// olderTwins are the complete, verified phase layers by key, the newest
// of each key that is not one of mine (the layers a build just made).
func (lr *Learner) olderTwins(mine map[string]bool) map[string]*layers.Layer {
	all, err := lr.Layers.List()
	if err != nil {
		return nil
	}
	byKey := map[string]*layers.Layer{}
	for _, l := range all { // oldest first
		if !mine[l.ID] && l.Meta.KindOf() == layers.KindPhase && l.Meta.Key != "" && l.Meta.Status == layers.StatusComplete && l.Meta.IsVerified() {
			byKey[l.Meta.Key] = l
		}
	}
	return byKey
}

// learnPair maps what depends on the output paths in the tree of l by
// comparing it with its twin o.
func (lr *Learner) learnPair(o, l *layers.Layer) (*rewrite.Map, error) {
	treeO, err := lr.Layers.Mount(o.ID)
	if err != nil {
		return nil, err
	}
	defer lr.Layers.Unmount(o.ID)
	treeL, err := lr.Layers.Mount(l.ID)
	if err != nil {
		return nil, err
	}
	defer lr.Layers.Unmount(l.ID)
	m, err := learnmap.Learn(treeO, treeL, o.Meta.Outputs, l.Meta.Outputs)
	if err != nil {
		return nil, fmt.Errorf("learning the path map of %s from another build of it: %w", l.Meta.Phase, err)
	}
	return m, nil
}

// FullIfFaster, for the hook (exact, never slower than Nix): when the
// reused layers have no path map, plan a full build with the new output
// paths, which learns the map from the pair (LearnFromPair). Three cases resume
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

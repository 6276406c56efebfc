package runner

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/rewrite"
)

// A build that reran phases whose keys match an older chain built with
// other output paths (the hook's full build after an edit, an exact
// fallback) made for them exactly what learning needs: the same phases
// with the same inputs and other output paths. The path map is learned
// from that pair, and no twin runs for those phases.

// learnFromPair compares the newest layer this build created that has an
// older twin (same key, verified, other output paths) with that twin and
// stores the map on it: the layer a resume after the next edit of the
// phase that follows starts from. It reports whether a map was stored.
// Only the top of the matching prefix is compared: one tree comparison,
// not one per phase; an edit further down the chain rebuilds in full
// again and learns there.
func (e *Engine) learnFromPair(ctx context.Context, plan *Plan, created []string, progress func(Event)) bool {
	if len(created) == 0 || e.opts.Rewriter != nil {
		return false
	}
	mine := map[string]bool{}
	for _, id := range created {
		mine[id] = true
	}
	byKey := e.olderTwins(mine)
	var newTop, oldTop *layers.Layer
	for _, id := range created {
		l, err := e.layers.Get(id)
		if err != nil || l.Meta.KindOf() != layers.KindPhase {
			break
		}
		o := byKey[l.Meta.Key]
		if o == nil || maps.Equal(o.Meta.Outputs, l.Meta.Outputs) {
			break
		}
		newTop, oldTop = l, o
	}
	if newTop == nil || e.storedMap(newTop.ID) != nil {
		return false
	}
	if err := rewrite.Pairable(oldTop.Meta.Outputs, newTop.Meta.Outputs); err != nil {
		e.log.Debug("this rebuild cannot teach the path map of its reruns; the background learner will", zap.Error(err))
		return false
	}
	return e.learnFromTwin(ctx, plan, oldTop, newTop, "this rebuild and the chain it replaces", progress) != nil
}

// mapFromPair is the lazy form of learnFromPair, for a resume whose reused
// top has no map: when a layer with its key was built with other output
// paths that pair with its own (the older chain of a rebuild), the map is
// learned from the two trees, one comparison, instead of a twin build or a
// provisional rewrite. So an edit of any phase in the prefix a rebuild
// shares with the chain it replaced resumes, not only the edit after the
// top of that prefix. nil when no such twin exists.
func (e *Engine) mapFromPair(ctx context.Context, plan *Plan, top string, progress func(Event)) *rewrite.Map {
	if e.opts.Rewriter != nil {
		return nil
	}
	l, err := e.layers.Get(top)
	if err != nil || l.Meta.KindOf() != layers.KindPhase || !verified(l) {
		return nil
	}
	twin := e.pairableTwin(l)
	if twin == nil {
		return nil
	}
	return e.learnFromTwin(ctx, plan, twin, l, "two builds of the chain with other output paths", progress)
}

// pairableTwin is a complete, verified phase layer with l's key, built with
// output paths that pair with l's (rewrite.Pairable), nil for none.
func (e *Engine) pairableTwin(l *layers.Layer) *layers.Layer {
	if l.Meta.Key == "" {
		return nil
	}
	all, err := e.layers.List()
	if err != nil {
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- { // newest first
		o := all[i]
		if o.ID == l.ID || o.Meta.Key != l.Meta.Key || o.Meta.KindOf() != layers.KindPhase || o.Meta.Status != layers.StatusComplete || !verified(o) || maps.Equal(o.Meta.Outputs, l.Meta.Outputs) {
			continue
		}
		if rewrite.Pairable(o.Meta.Outputs, l.Meta.Outputs) == nil {
			return o
		}
	}
	return nil
}

// learnFromTwin learns the map of newTop from its twin oldTop, stores it,
// records the reach of the bytes it cannot explain, and says so; nil when
// learning failed (logged: the caller goes on without the map).
func (e *Engine) learnFromTwin(ctx context.Context, plan *Plan, oldTop, newTop *layers.Layer, from string, progress func(Event)) *rewrite.Map {
	t0 := time.Now()
	m, err := e.learnPair(oldTop, newTop)
	if err != nil {
		e.log.Warn("learning the path map from two builds", zap.Error(err))
		return nil
	}
	chain, err := e.phaseChain(newTop.ID, newTop.Meta.Index+1)
	if err == nil {
		// No reruns here: the unexplained bytes' reach is recorded, their
		// cause stays unknown (judged on the outputs of each resume).
		err = e.judgeLearned(ctx, nil, plan, chain, nil, nil, false, progress)
	}
	if err != nil {
		e.log.Warn("judging the unexplained bytes of a map learned from two builds", zap.Error(err))
	}
	if stored := e.storedMap(newTop.ID); stored != nil {
		m = stored // with the reach judgeLearned recorded
	}
	how := "exact"
	if !m.Exact() {
		how = fmt.Sprintf("%d file(s) it cannot explain are judged on the outputs of each resume", len(m.Unexplained)+len(m.Problems))
	}
	progress(Event{Kind: EventLearned, Elapsed: time.Since(t0), Message: fmt.Sprintf("path map learned from %s, up to %s, in %s (%s); no twin build needed", from, newTop.Meta.Phase, Duration(time.Since(t0)), how)})
	return m
}

// olderTwins are the complete, verified phase layers by key, the newest
// of each key that is not one of mine (the layers a build just made).
func (e *Engine) olderTwins(mine map[string]bool) map[string]*layers.Layer {
	all, err := e.layers.List()
	if err != nil {
		return nil
	}
	byKey := map[string]*layers.Layer{}
	for _, l := range all { // oldest first
		if !mine[l.ID] && l.Meta.KindOf() == layers.KindPhase && l.Meta.Key != "" && l.Meta.Status == layers.StatusComplete && verified(l) {
			byKey[l.Meta.Key] = l
		}
	}
	return byKey
}

// learnPair maps what depends on the output paths in the tree of l by
// comparing it with its twin o, and keeps the map with l.
func (e *Engine) learnPair(o, l *layers.Layer) (*rewrite.Map, error) {
	treeO, err := e.layers.Mount(o.ID)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(o.ID)
	treeL, err := e.layers.Mount(l.ID)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(l.ID)
	m, err := rewrite.Learn(treeO, treeL, o.Meta.Outputs, l.Meta.Outputs)
	if err != nil {
		return nil, fmt.Errorf("learning the path map of %s from its rebuild: %w", l.Meta.Phase, err)
	}
	return m, e.storeMap(l.ID, m)
}

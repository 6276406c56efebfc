package build

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/learn"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/shellstate"
	"github.com/nixlayer/nixlayer/verdict"
)

// resume is a rewrite of reused layers whose exactness is judged on the
// outputs of the build that continues on it: the bytes its path map cannot
// explain make the result inexact only if they reach an output.
type resume struct {
	n       int              // reused phases
	chain   []*layers.Layer  // the reused phase layers, oldest first
	layer   string           // the rewritten layer the later phases start from
	m       *rewrite.Map     // nil without a learned map
	verdict *rewrite.Verdict // of the rewrite
	// verified: the reused layers themselves rest on no forced reuse or
	// inexact rewrite, so the result is verified if its outputs are exact.
	verified bool
	// provisional: rewritten without a map (rewrite.Provisional), so that
	// the result comes at once; the background work settles it.
	provisional bool
	old2new     map[string]string
}

// rewriteReused rewrites the n reused layers under parent for the current
// output paths. It returns the layer and shell state to continue from, and
// a resume when the outputs must decide (nil when the rewrite is exact, or
// failed and stays so). With exact, a failed rewrite falls back at once to
// the longest prefix that can be rewritten.
func (b *Builder) rewriteReused(ctx context.Context, j *phaserun.Job, plan *planner.Plan, parent string, state *shellstate.Delta, res *Result, exact bool, progress func(events.Event)) (*resume, string, *shellstate.Delta, error) {
	n := len(res.Reused)
	verified := res.Verified
	rw := b.Rewriter
	var m *rewrite.Map
	provisional := false
	if rw == nil {
		m = b.Learner.StoredMap(parent)
		if m == nil {
			m = b.Learner.MapFromPair(ctx, plan, j.Pkg, parent, false, progress)
		}
		switch {
		case m != nil:
		case !exact:
			// Nobody waits for learning: rewrite now what a scan can see,
			// Deliver the result as provisional, and let the background
			// learner confirm the rewrite or replace the result.
			rw, provisional = rewrite.Provisional{}, true
		default:
			var err error
			m, err = b.Learner.PathMap(ctx, j, plan, parent, n, progress)
			if err != nil {
				if ctx.Err() != nil {
					return nil, "", nil, err
				}
				b.Log.Warn("no path map; falling back to hash substitution", zap.Error(err))
				progress(events.Event{Kind: events.EventLearned, Message: "path map not learned: " + err.Error()})
			}
		}
		if rw == nil {
			rw = rewrite.Learned{Map: m}
		}
	}
	rewritten, next, err := b.RewriteLayer(j, parent, state, plan.Rewrite, res, rw)
	if err != nil {
		return nil, "", nil, err
	}
	progress(events.Event{Kind: events.EventRewrite, Exact: res.Rewrite.Exact, Message: rewriteMessage(res.Rewrite)})
	chain, err := layers.PhaseChain(b.Layers, parent, n)
	if err != nil {
		chain = nil // producers unknown: an inexact verdict rebuilds everything
	}
	rs := &resume{n: n, chain: chain, layer: rewritten, m: m, verdict: res.Rewrite, verified: verified, provisional: provisional, old2new: plan.Rewrite}
	switch afterRewrite(res.Rewrite, provisional, exact, m != nil) {
	case rewriteSettleLater, rewriteJudge:
		return rs, rewritten, next, nil
	case rewriteExact:
		res.Exactness = verdict.Decide(nil, planner.PhaseNames(plan.Phases))
		return nil, rewritten, next, nil
	case rewritePredict:
		if ex := b.Learner.PredictExactness(m, chain, plan.Phases); !ex.Exact {
			progress(events.Event{Kind: events.EventVerdict, Message: "outputs NOT exact, as in the last build on these layers: " + ex.Summary})
			b.DropLayers(rewritten)
			res.Exactness, res.Inexact = ex, ex
			fb := inexactFallBack(ex, n, true)
			return b.fallBack(ctx, j, plan, rs, fb.keep, fb.why, res, progress)
		}
		return rs, rewritten, next, nil
	case rewriteUnverified:
		res.Exactness = verdict.Failed(res.Rewrite, b.Learner.Producers(chain), planner.PhaseNames(plan.Phases))
		return nil, rewritten, next, nil
	}
	res.Exactness = verdict.Failed(res.Rewrite, b.Learner.Producers(chain), planner.PhaseNames(plan.Phases))
	b.DropLayers(rewritten)
	res.Inexact = res.Exactness
	fb := failedRewriteFallBack(n)
	return b.fallBack(ctx, j, plan, rs, fb.keep, fb.why, res, progress)
}

// rewriteStep is what a build does with the rewrite of its reused layers.
type rewriteStep int

const (
	// rewriteSettleLater: rewritten provisionally, without a map: the
	// result comes at once and the background work settles it.
	rewriteSettleLater rewriteStep = iota
	// rewriteExact: the map explains every byte; nothing to judge.
	rewriteExact
	// rewritePredict: an exact build with a map first asks the last build
	// judged on these layers: if their bytes reached its outputs, it does
	// not try again but reruns at once; otherwise rewriteJudge.
	rewritePredict
	// rewriteJudge: the outputs judge the bytes the map cannot explain,
	// once the later phases ran.
	rewriteJudge
	// rewriteUnverified: the rewrite failed; without exact the build goes
	// on, and its result is not verified.
	rewriteUnverified
	// rewriteFallBack: the rewrite failed; an exact build drops it and
	// reruns (failedRewriteFallBack).
	rewriteFallBack
)

// afterRewrite decides from the rewrite's verdict v, whether it was
// provisional, whether the build must be exact and whether it had a map.
func afterRewrite(v *rewrite.Verdict, provisional, exact, hasMap bool) rewriteStep {
	switch {
	case provisional:
		return rewriteSettleLater
	case v.Exact:
		return rewriteExact
	case len(v.Failed) == 0 && exact && hasMap:
		return rewritePredict
	case len(v.Failed) == 0:
		return rewriteJudge
	case !exact:
		return rewriteUnverified
	}
	return rewriteFallBack
}

// fallback is where an exact build retreats to from a resume that would
// not be exact: it keeps at most keep reused phases (fallBack keeps the
// longest prefix whose rewrite does not fail) and reruns the others, the
// first for why.
type fallback struct {
	keep int
	why  string
}

// failedRewriteFallBack retreats from a rewrite of reused phases that
// failed: the last of them at least reruns.
func failedRewriteFallBack(reused int) fallback {
	return fallback{keep: reused - 1, why: "reused layers could not be rewritten exactly for the new output paths"}
}

// inexactFallBack retreats from outputs judged inexact (ex) on a rewrite
// of reused phases: to the phase that made the offending bytes, and at
// least the last reused one. predicted: judged on the outputs of the last
// build on these layers, before this one ran anything.
func inexactFallBack(ex *verdict.Exactness, reused int, predicted bool) fallback {
	reach := "reach the outputs"
	if predicted {
		reach = "reached the outputs of the last build"
	}
	return fallback{keep: min(ex.RebuildIndex, reused-1), why: "the reused " + ex.RebuildFrom + " made bytes that " + reach + " and cannot be rewritten (" + string(ex.Rule) + ")"}
}

// judgeResume decides, once the phases after the reuse have run (top is
// the finished build, created the layers they made), whether the outputs
// are exact. An exact verdict verifies the new layers; an inexact one with
// exact set drops them and falls back to the phase that produced the
// offending bytes: again is then true, with the resume of the kept prefix
// (nil when there is nothing to judge) and where to continue.
func (b *Builder) judgeResume(ctx context.Context, j *phaserun.Job, plan *planner.Plan, rs *resume, top string, created []string, res *Result, exact bool, progress func(events.Event)) (next *resume, parent string, state *shellstate.Delta, again bool, err error) {
	ex, err := b.judgeLayers(j, plan, rs, top)
	if err != nil {
		return nil, "", nil, false, err
	}
	res.Exactness = ex
	progress(events.Event{Kind: events.EventVerdict, Exact: ex.Exact, Message: verdict.Message(ex)})
	verified, fb := judgedResume(ex, rs.verified, exact, rs.n)
	res.Verified = verified
	if fb == nil {
		if verified {
			b.MarkVerified(append([]string{rs.layer}, created...))
		}
		return nil, top, nil, false, nil
	}
	b.DropLayers(append([]string{rs.layer}, created...)...)
	res.Inexact = ex
	next, parent, state, err = b.fallBack(ctx, j, plan, rs, fb.keep, fb.why, res, progress)
	return next, parent, state, err == nil, err
}

// judgedResume decides once the outputs of a resume are judged (ex) on a
// rewrite of reused phases (reusedVerified: resting on no forced reuse or
// inexact rewrite): whether the result is verified, its new layers marked
// so, and, for an exact build whose outputs are not exact, where it falls
// back to (nil: the build stands).
func judgedResume(ex *verdict.Exactness, reusedVerified, exact bool, reused int) (verified bool, fb *fallback) {
	switch {
	case ex.Exact:
		return reusedVerified, nil
	case !exact:
		return false, nil
	}
	f := inexactFallBack(ex, reused, false)
	return false, &f
}

func (b *Builder) judgeLayers(j *phaserun.Job, plan *planner.Plan, rs *resume, top string) (*verdict.Exactness, error) {
	topRoot, err := b.Layers.Mount(top)
	if err != nil {
		return nil, err
	}
	defer b.Layers.Unmount(top)
	tree, err := b.Layers.Mount(rs.layer)
	if err != nil {
		return nil, err
	}
	defer b.Layers.Unmount(rs.layer)
	return b.Learner.JudgeOutputs(rs.verdict, rs.m, rs.chain, plan.Phases, tree, j.Drv.Outputs, learn.OutputDirs(topRoot, j.Drv.Outputs))
}

// fallBack keeps at most maxKeep reused phases, the longest prefix whose
// rewrite does not fail, and marks the phases after it to run with the
// real output paths in res.Plan (a new plan: plan stays as it was). It
// returns the resume of the kept prefix (nil when its rewrite is exact or
// nothing is kept) and where to continue.
func (b *Builder) fallBack(ctx context.Context, j *phaserun.Job, plan *planner.Plan, rs *resume, maxKeep int, why string, res *Result, progress func(events.Event)) (*resume, string, *shellstate.Delta, error) {
	res.Verified = rs.verified
	keep, parent, state, next, err := b.exactPrefix(ctx, j, plan, rs, maxKeep, res)
	if err != nil {
		return nil, "", nil, err
	}
	progress(events.Event{Kind: events.EventFallback, Message: fallBackMessage(keep, planner.PhaseNames(plan.Phases))})
	res.Reused, res.Ran = res.Reused[:keep], nil
	res.Plan = planner.RerunFrom(plan, keep, why)
	if keep == 0 {
		res.Plan.Rewrite = nil
		res.Rewrite, res.Exactness = nil, nil
		res.Verified = true
	}
	return next, parent, state, nil
}

// fallBackMessage says where a fallback that keeps keep reused phases of
// phases (the names of the plan's) reruns from.
func fallBackMessage(keep int, phases []string) string {
	if keep == 0 {
		return "outputs would not be exact; rebuilding every phase with the real output paths"
	}
	return fmt.Sprintf("outputs would not be exact; keeping %d phases and rebuilding from %s with the real output paths", keep, phases[keep])
}

// exactPrefix finds the longest prefix of the reused chain, at most
// maxKeep phases, whose path map can be applied, and rewrites it on a new
// layer. It returns how many phases it keeps (0: none, start from
// scratch), the layer and shell state to continue from, and the resume to
// judge when the map leaves bytes unexplained.
func (b *Builder) exactPrefix(ctx context.Context, j *phaserun.Job, plan *planner.Plan, rs *resume, maxKeep int, res *Result) (int, string, *shellstate.Delta, *resume, error) {
	var start *shellstate.Delta
	if j.Probe != nil {
		start = j.Probe.Start
	}
	for k := min(maxKeep, len(rs.chain)); k >= 1; k-- {
		if ctx.Err() != nil {
			return 0, "", nil, nil, ctx.Err()
		}
		base := rs.chain[k-1]
		m := b.Learner.StoredMap(base.ID)
		if !mapApplies(m) {
			continue
		}
		old2new := map[string]string{}
		for name, old := range base.Meta.Outputs {
			if cur := j.Drv.Outputs[name]; cur != "" && cur != old {
				old2new[old] = cur
			}
		}
		state, err := b.Run.LoadState(base.ID)
		if err != nil {
			return 0, "", start, nil, err
		}
		rewritten, next, err := b.RewriteLayer(j, base.ID, state, old2new, res, rewrite.Learned{Map: m})
		if err != nil {
			return 0, "", start, nil, err
		}
		switch v := res.Rewrite; prefixRewrite(v) {
		case prefixShorter:
			b.DropLayers(rewritten)
			continue
		case prefixExact:
			res.Exactness = verdict.Decide(nil, planner.PhaseNames(plan.Phases))
			return k, rewritten, next, nil, nil
		default:
			return k, rewritten, next, &resume{n: k, chain: rs.chain[:k], layer: rewritten, m: m, verdict: v, verified: rs.verified}, nil
		}
	}
	res.Rewrite = nil
	return 0, "", start, nil, nil
}

// mapApplies says whether a prefix's stored path map (nil: none) can be
// applied: learned without problems.
func mapApplies(m *rewrite.Map) bool { return m != nil && len(m.Problems) == 0 }

// prefixStep is what exactPrefix does with a prefix it rewrote.
type prefixStep int

const (
	// prefixShorter: the rewrite failed; try one phase fewer.
	prefixShorter prefixStep = iota
	// prefixExact: the map explains every byte: keep it, nothing to judge.
	prefixExact
	// prefixJudged: keep it; the outputs judge the bytes its map cannot
	// explain.
	prefixJudged
)

// prefixRewrite decides from the prefix's rewrite verdict.
func prefixRewrite(v *rewrite.Verdict) prefixStep {
	switch {
	case len(v.Failed) > 0:
		return prefixShorter
	case v.Exact:
		return prefixExact
	}
	return prefixJudged
}

// MarkVerified records that layers built on a rewrite are exact after all:
// the outputs showed that the bytes the map could not explain reach none.
func (b *Builder) MarkVerified(ids []string) {
	t := true
	for _, id := range ids {
		l, err := b.Layers.Get(id)
		if err != nil {
			continue
		}
		l.Meta.Verified = &t
		if err := b.Layers.Finish(id, l.Meta); err != nil {
			b.Log.Warn("marking a layer verified", zap.String("layer", id), zap.Error(err))
		}
	}
}

// DropLayers deletes layers of an attempt that will not be used, the
// newest first (the last given is the newest), but for those another
// build chose meanwhile: it mounts what it reuses (pinChain), and the
// layers under them stay too.
func (b *Builder) DropLayers(ids ...string) {
	unlock, err := b.Locks.Exclusive(context.Background(), cachelock.Removal, "", nil)
	if err != nil {
		b.Log.Warn("leaving unused layers to gc", zap.Error(err))
		return
	}
	defer unlock()
	for i := len(ids) - 1; i >= 0; i-- {
		b.Layers.Unmount(ids[i])
		if b.Layers.MountCount(ids[i]) > 0 {
			b.Log.Debug("an unused layer is in use by another build; gc removes it later", zap.String("layer", ids[i]))
			continue
		}
		if err := b.Layers.Delete(ids[i]); err != nil {
			b.Log.Warn("removing an unused layer", zap.String("layer", ids[i]), zap.Error(err))
		}
	}
}

// rewriteMessage is the one log line about a rewrite.
func rewriteMessage(v *rewrite.Verdict) string {
	head := fmt.Sprintf("reused layers rewritten for the new output path: %%s%d files (%s)", v.Files, v.Method)
	switch {
	case v.Method == rewrite.ProvisionalMethod:
		return fmt.Sprintf(head, "provisionally, without waiting for the path map: ")
	case v.Exact:
		return fmt.Sprintf(head, "exact: ")
	case len(v.Failed) > 0:
		return fmt.Sprintf(head, "not verified: ") + "; " + logtail.FirstFew(v.Failed, 3)
	}
	var files []string
	for _, u := range v.Unexplained {
		files = append(files, u.Path)
	}
	return fmt.Sprintf(head, "") + fmt.Sprintf("; the map cannot explain bytes in %d file(s) (%s), left as they are: the outputs decide", len(files), logtail.FirstFew(files, 3))
}

// WhyNotVerified explains, in one line, why a result stays outside the
// Nix store ("" when it is verified).
func (r *Result) WhyNotVerified() string {
	switch {
	case r.Verified:
		return ""
	case r.Plan != nil && r.Plan.HasForced():
		return "it reuses layers whose inputs differ (--from)"
	case r.Exactness != nil && !r.Exactness.Exact:
		ex := r.Exactness
		why := "bytes of the reused layers that the path map cannot explain would reach the outputs (" + ex.Summary + ")"
		for _, f := range ex.Findings {
			if f.Rule == ex.Rule {
				why += "; " + f.File + ": " + f.Why + f.Reach()
				break
			}
		}
		why += "; nixlayer verify and plan --json list every file"
		if ex.RebuildFrom != "" {
			why += "; --exact rebuilds from " + ex.RebuildFrom
		}
		return why
	}
	return "it reuses layers that rest on an inexact rewrite of an earlier build; --exact rebuilds them"
}

// RewriteLayer is phaserun's RewriteLayer with its verdict recorded on
// res: a rewrite that is not exact leaves the result unverified.
func (b *Builder) RewriteLayer(j *phaserun.Job, parent string, state *shellstate.Delta, old2new map[string]string, res *Result, rw rewrite.Rewriter) (string, *shellstate.Delta, error) {
	id, next, v, err := b.Run.RewriteLayer(j, parent, state, old2new, rw)
	if err != nil {
		return "", nil, err
	}
	res.Rewrite = v
	if !v.Exact {
		res.Verified = false
	}
	return id, next, nil
}

package runner

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layers"
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
func (e *Engine) rewriteReused(ctx context.Context, j *job, plan *Plan, parent string, state *shellstate.Delta, res *Result, exact bool, progress func(events.Event)) (*resume, string, *shellstate.Delta, error) {
	n := len(res.Reused)
	verified := res.Verified
	rw := e.opts.Rewriter
	var m *rewrite.Map
	provisional := false
	if rw == nil {
		m = e.storedMap(parent)
		if m == nil {
			m = e.mapFromPair(ctx, plan, j.pkg, parent, false, progress)
		}
		switch {
		case m != nil:
		case !exact:
			// Nobody waits for learning: rewrite now what a scan can see,
			// deliver the result as provisional, and let the background
			// learner confirm the rewrite or replace the result.
			rw, provisional = rewrite.Provisional{}, true
		default:
			var err error
			m, err = e.pathMap(ctx, j, plan, parent, n, progress)
			if err != nil {
				if ctx.Err() != nil {
					return nil, "", nil, err
				}
				e.log.Warn("no path map; falling back to hash substitution", zap.Error(err))
				progress(events.Event{Kind: events.EventLearned, Message: "path map not learned: " + err.Error()})
			}
		}
		if rw == nil {
			rw = rewrite.Learned{Map: m}
		}
	}
	rewritten, next, err := e.rewriteLayer(j, parent, state, plan.Rewrite, res, rw)
	if err != nil {
		return nil, "", nil, err
	}
	progress(events.Event{Kind: events.EventRewrite, Exact: res.Rewrite.Exact, Message: rewriteMessage(res.Rewrite)})
	chain, err := e.phaseChain(parent, n)
	if err != nil {
		chain = nil // producers unknown: an inexact verdict rebuilds everything
	}
	rs := &resume{n: n, chain: chain, layer: rewritten, m: m, verdict: res.Rewrite, verified: verified, provisional: provisional, old2new: plan.Rewrite}
	if provisional {
		return rs, rewritten, next, nil
	}
	switch v := res.Rewrite; {
	case v.Exact:
		res.Exactness = verdict.Decide(nil, phaseNames(plan.Phases))
		return nil, rewritten, next, nil
	case len(v.Failed) == 0 && exact && m != nil:
		// The last build judged on these layers saw their bytes reach the
		// outputs: an exact build does not try again, it reruns at once.
		if ex := e.predictExactness(m, chain, plan.Phases); !ex.Exact {
			progress(events.Event{Kind: events.EventVerdict, Message: "outputs NOT exact, as in the last build on these layers: " + ex.Summary})
			e.dropLayers(rewritten)
			res.Exactness, res.Inexact = ex, ex
			return e.fallBack(ctx, j, plan, rs, min(ex.RebuildIndex, n-1), "the reused "+ex.RebuildFrom+" made bytes that reached the outputs of the last build and cannot be rewritten ("+string(ex.Rule)+")", res, progress)
		}
		return rs, rewritten, next, nil
	case len(v.Failed) == 0:
		return rs, rewritten, next, nil
	}
	res.Exactness = verdict.Failed(res.Rewrite, e.producers(chain), phaseNames(plan.Phases))
	if !exact {
		return nil, rewritten, next, nil
	}
	e.dropLayers(rewritten)
	res.Inexact = res.Exactness
	return e.fallBack(ctx, j, plan, rs, n-1, "reused layers could not be rewritten exactly for the new output paths", res, progress)
}

// judgeResume decides, once the phases after the reuse have run (top is
// the finished build, created the layers they made), whether the outputs
// are exact. An exact verdict verifies the new layers; an inexact one with
// exact set drops them and falls back to the phase that produced the
// offending bytes: again is then true, with the resume of the kept prefix
// (nil when there is nothing to judge) and where to continue.
func (e *Engine) judgeResume(ctx context.Context, j *job, plan *Plan, rs *resume, top string, created []string, res *Result, exact bool, progress func(events.Event)) (next *resume, parent string, state *shellstate.Delta, again bool, err error) {
	ex, err := e.judgeLayers(j, plan, rs, top)
	if err != nil {
		return nil, "", nil, false, err
	}
	res.Exactness = ex
	progress(events.Event{Kind: events.EventVerdict, Exact: ex.Exact, Message: verdict.Message(ex)})
	if ex.Exact {
		res.Verified = rs.verified
		if res.Verified {
			e.markVerified(append([]string{rs.layer}, created...))
		}
		return nil, top, nil, false, nil
	}
	res.Verified = false
	if !exact {
		return nil, top, nil, false, nil
	}
	e.dropLayers(append([]string{rs.layer}, created...)...)
	res.Inexact = ex
	keep := min(ex.RebuildIndex, rs.n-1)
	next, parent, state, err = e.fallBack(ctx, j, plan, rs, keep, "the reused "+ex.RebuildFrom+" made bytes that reach the outputs and cannot be rewritten ("+string(ex.Rule)+")", res, progress)
	return next, parent, state, err == nil, err
}

func (e *Engine) judgeLayers(j *job, plan *Plan, rs *resume, top string) (*verdict.Exactness, error) {
	topRoot, err := e.layers.Mount(top)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(top)
	tree, err := e.layers.Mount(rs.layer)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(rs.layer)
	return e.judgeOutputs(rs.verdict, rs.m, rs.chain, plan.Phases, tree, j.drv.Outputs, outputDirs(topRoot, j.drv.Outputs))
}

// fallBack keeps at most maxKeep reused phases, the longest prefix whose
// rewrite does not fail, and marks the phases after it to run with the
// real output paths in res.Plan (a new plan: plan stays as it was). It
// returns the resume of the kept prefix (nil when its rewrite is exact or
// nothing is kept) and where to continue.
func (e *Engine) fallBack(ctx context.Context, j *job, plan *Plan, rs *resume, maxKeep int, why string, res *Result, progress func(events.Event)) (*resume, string, *shellstate.Delta, error) {
	res.Verified = rs.verified
	keep, parent, state, next, err := e.exactPrefix(ctx, j, plan, rs, maxKeep, res)
	if err != nil {
		return nil, "", nil, err
	}
	if keep > 0 {
		progress(events.Event{Kind: events.EventFallback, Message: fmt.Sprintf("outputs would not be exact; keeping %d phases and rebuilding from %s with the real output paths", keep, plan.Phases[keep].Name)})
	} else {
		progress(events.Event{Kind: events.EventFallback, Message: "outputs would not be exact; rebuilding every phase with the real output paths"})
	}
	res.Reused, res.Ran = res.Reused[:keep], nil
	res.Plan = rerunFrom(plan, keep, why)
	if keep == 0 {
		res.Plan.Rewrite = nil
		res.Rewrite, res.Exactness = nil, nil
		res.Verified = true
	}
	return next, parent, state, nil
}

// exactPrefix finds the longest prefix of the reused chain, at most
// maxKeep phases, whose path map can be applied, and rewrites it on a new
// layer. It returns how many phases it keeps (0: none, start from
// scratch), the layer and shell state to continue from, and the resume to
// judge when the map leaves bytes unexplained.
func (e *Engine) exactPrefix(ctx context.Context, j *job, plan *Plan, rs *resume, maxKeep int, res *Result) (int, string, *shellstate.Delta, *resume, error) {
	var start *shellstate.Delta
	if j.probe != nil {
		start = j.probe.Start
	}
	for k := min(maxKeep, len(rs.chain)); k >= 1; k-- {
		if ctx.Err() != nil {
			return 0, "", nil, nil, ctx.Err()
		}
		base := rs.chain[k-1]
		m := e.storedMap(base.ID)
		if m == nil || len(m.Problems) > 0 {
			continue
		}
		old2new := map[string]string{}
		for name, old := range base.Meta.Outputs {
			if cur := j.drv.Outputs[name]; cur != "" && cur != old {
				old2new[old] = cur
			}
		}
		state, err := e.loadState(base.ID)
		if err != nil {
			return 0, "", start, nil, err
		}
		rewritten, next, err := e.rewriteLayer(j, base.ID, state, old2new, res, rewrite.Learned{Map: m})
		if err != nil {
			return 0, "", start, nil, err
		}
		switch v := res.Rewrite; {
		case len(v.Failed) > 0:
			e.dropLayers(rewritten)
			continue
		case v.Exact:
			res.Exactness = verdict.Decide(nil, phaseNames(plan.Phases))
			return k, rewritten, next, nil, nil
		default:
			return k, rewritten, next, &resume{n: k, chain: rs.chain[:k], layer: rewritten, m: m, verdict: v, verified: rs.verified}, nil
		}
	}
	res.Rewrite = nil
	return 0, "", start, nil, nil
}

// markVerified records that layers built on a rewrite are exact after all:
// the outputs showed that the bytes the map could not explain reach none.
func (e *Engine) markVerified(ids []string) {
	t := true
	for _, id := range ids {
		l, err := e.layers.Get(id)
		if err != nil {
			continue
		}
		l.Meta.Verified = &t
		if err := e.layers.Finish(id, l.Meta); err != nil {
			e.log.Warn("marking a layer verified", zap.String("layer", id), zap.Error(err))
		}
	}
}

// dropLayers deletes layers of an attempt that will not be used, the
// newest first (the last given is the newest), but for those another
// build chose meanwhile: it mounts what it reuses (pinChain), and the
// layers under them stay too.
func (e *Engine) dropLayers(ids ...string) {
	unlock, err := e.lockFile(context.Background(), removalLock, "", nil)
	if err != nil {
		e.log.Warn("leaving unused layers to gc", zap.Error(err))
		return
	}
	defer unlock()
	for i := len(ids) - 1; i >= 0; i-- {
		e.layers.Unmount(ids[i])
		if e.layers.MountCount(ids[i]) > 0 {
			e.log.Debug("an unused layer is in use by another build; gc removes it later", zap.String("layer", ids[i]))
			continue
		}
		if err := e.layers.Delete(ids[i]); err != nil {
			e.log.Warn("removing an unused layer", zap.String("layer", ids[i]), zap.Error(err))
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
		return fmt.Sprintf(head, "not verified: ") + "; " + fewLines(v.Failed, 3)
	}
	var files []string
	for _, u := range v.Unexplained {
		files = append(files, u.Path)
	}
	return fmt.Sprintf(head, "") + fmt.Sprintf("; the map cannot explain bytes in %d file(s) (%s), left as they are: the outputs decide", len(files), fewLines(files, 3))
}

// fewLines joins the first n items and counts the rest.
func fewLines(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:n], "; ") + fmt.Sprintf("; and %d more", len(items)-n)
}

// WhyNotVerified explains, in one line, why a result stays outside the
// Nix store ("" when it is verified).
func (r *Result) WhyNotVerified() string {
	switch {
	case r.Verified:
		return ""
	case r.Plan != nil && hasForced(r.Plan):
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

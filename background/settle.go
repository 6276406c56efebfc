package background

import (
	"archive/tar"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/learn"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/nixstore/storetree"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
)

// Learn is the background work a build leaves (`nixlayer learn`, started
// detached by afterBuild): it settles the package's pending results —
// learning the path maps they wait for — and learns the path map of the
// newest chain of drvPath and of each settled result when they lack one.
// Then it audits the resumed results chosen for an audit (audit.go).
// It looks again until nothing is left, so results of builds made while
// it worked are settled too. One runs per package at a time.
// ro applies to pushing the learned maps to the config's pushTo.
// The work covers every user's results, but v (the caller) hears only of
// those it may see (Viewer.ResultFor).
func (w *Worker) Learn(ctx context.Context, drvPath string, ro layercache.RegistryOptions, v *access.Viewer, progress func(events.Event)) error {
	if progress == nil {
		progress = func(events.Event) {}
	}
	silent := func(events.Event) {}
	progressFor := func(r *results.Record) func(events.Event) {
		if v.ResultFor(r) == nil {
			return silent
		}
		return progress
	}
	hidden := map[string]bool{} // derivations of results v may not see
	j, err := w.Run.Prepare(ctx, drvPath, io.Discard)
	if err != nil {
		return err
	}
	defer results.AnnounceBackground(w.CacheDir, j.Pkg, drvPath, os.Getpid(), "")() // waiting counts: it will run
	unlock, err := w.Locks.Exclusive(ctx, cachelock.Background, j.Pkg, func() {
		progress(events.Event{Kind: events.EventWait, Message: "waiting for the background work on " + j.Pkg + " that is running"})
	})
	if err != nil {
		return err
	}
	defer unlock()
	// A foreground build that reruns the chain being learned (for a
	// result to settle or for the newest chain) stops all of it: the pair it
	// makes teaches the map, and its own background work starts after it.
	ctx, stopYield := w.yieldable(ctx, j.Pkg)
	defer stopYield()
	// stopsAll says whether a failed step (settling, learning, auditing)
	// ends the work, and with what: yielding to a foreground build ends it
	// with no error, a cancel with err.
	stopsAll := func(err error) (bool, error) {
		switch afterBackgroundError(foreground.Yielded(ctx), ctx.Err() != nil) {
		case bgYield:
			progress(events.Event{Kind: events.EventLearned, Message: j.Pkg + ": " + foreground.ErrYielded.Error()})
			return true, nil
		case bgStop:
			return true, err
		}
		return false, nil
	}
	toLearn := []string{drvPath}
	learnedAny, tried := false, map[string]bool{}
	var errs []error
	for round := 0; round < 20; round++ {
		busy := false
		for _, r := range results.Pending(w.CacheDir, j.Pkg) {
			busy = true
			if err := w.settle(ctx, r, progressFor(r)); err != nil {
				if stop, ret := stopsAll(err); stop {
					return ret
				}
				errs = reportTo(v, r, errs, err, w.Log)
			}
			if v.ResultFor(r) == nil && r.Drv != drvPath {
				hidden[r.Drv] = true
			}
			toLearn = append(toLearn, r.Drv)
		}
		for _, d := range toLearn {
			if tried[d] {
				continue
			}
			tried[d] = true
			heard := progress
			if hidden[d] {
				heard = silent
			}
			learned, err := w.learnNewest(ctx, d, ro, heard)
			if err != nil {
				if stop, ret := stopsAll(err); stop {
					return ret
				}
				if learnErrorIsCallers(d == drvPath, learnedAny, busy) {
					errs = append(errs, err)
				}
				w.Log.Warn("learning a chain in the background", zap.String("drv", d), zap.Error(err))
			}
			learnedAny = learnedAny || learned
			busy = busy || learned
		}
		toLearn = nil
		for _, r := range w.auditsDue(j.Pkg) {
			busy = true
			if err := w.audit(ctx, r, progressFor(r)); err != nil {
				if stop, ret := stopsAll(err); stop {
					return ret
				}
				errs = reportTo(v, r, errs, err, w.Log)
			}
		}
		if !busy {
			break
		}
	}
	return errors.Join(errs...)
}

// bgErrorStep is what the background work does after one of its steps
// (settling, learning, auditing) failed.
type bgErrorStep int

const (
	// bgGoOn: the error is reported (or logged) and the rest goes on.
	bgGoOn bgErrorStep = iota
	// bgYield: a foreground build reruns the chain: stop, with no error
	// (its pair teaches the map; its own background work follows).
	bgYield
	// bgStop: cancelled: stop with the error.
	bgStop
)

// afterBackgroundError decides from whether the work yielded to a
// foreground build and whether it was cancelled (a yield cancels too).
func afterBackgroundError(yielded, cancelled bool) bgErrorStep {
	switch {
	case yielded:
		return bgYield
	case cancelled:
		return bgStop
	}
	return bgGoOn
}

// learnErrorIsCallers says whether an error learning a newest chain is
// the caller's: only for the derivation it asked about (asked), and only
// when nothing else was done, which would make the run a success.
func learnErrorIsCallers(asked, learnedAny, busy bool) bool {
	return asked && !learnedAny && !busy
}

// reportTo adds err, from settling or auditing r, to the errors for v;
// about a result v may not see, it only logs it.
func reportTo(v *access.Viewer, r *results.Record, errs []error, err error, log *zap.Logger) []error {
	if v.ResultFor(r) == nil {
		log.Warn("settling or auditing another user's result", zap.String("drv", r.Drv), zap.Error(err))
		return errs
	}
	return append(errs, err)
}

// learnNewest learns the path maps of the newest verified chain of a
// derivation, if it lacks them; learned says whether it ran.
func (w *Worker) learnNewest(ctx context.Context, drvPath string, ro layercache.RegistryOptions, progress func(events.Event)) (learned bool, err error) {
	j, err := w.Run.Prepare(ctx, drvPath, io.Discard)
	if err != nil {
		return false, err
	}
	plan, err := w.Plans.Plan(j, planner.Options{RequireVerified: true})
	if err != nil {
		return false, err
	}
	n, top, err := newestToLearn(plan, j.Drv.Name)
	if err != nil || top == "" {
		return false, err
	}
	unlock, err := w.Locks.Exclusive(ctx, cachelock.Learn, j.Pkg, nil)
	if err != nil {
		return false, err
	}
	defer unlock()
	if w.Learner.StoredMap(top) != nil {
		progress(events.Event{Kind: events.EventLearned, Message: j.Drv.Name + ": path maps already learned"})
		w.Caches.PushBuilt(ctx, top, ro, progress) // config.json pushTo (CI)
		return false, nil
	}
	chain, err := layers.PhaseChain(w.Layers, top, n)
	if err != nil {
		return false, err
	}
	if err := w.Learner.LearnChain(ctx, j, plan, chain, learn.All, progress); err != nil {
		return true, err
	}
	w.Caches.PushBuilt(ctx, top, ro, progress) // the chain with its maps
	return true, nil
}

// newestToLearn is the chain of a derivation's newest plan whose maps
// learnNewest learns: the n phases it reuses, top the newest of them;
// none for a plan built whole (nothing layered), an error when nothing is
// cached.
func newestToLearn(p *planner.Plan, name string) (n int, top string, err error) {
	if p.Whole {
		return 0, "", nil
	}
	if n, top = p.ReusedPrefix(); top == "" {
		return 0, "", fmt.Errorf("%s has no cached layers to learn from: build it first", name)
	}
	return n, top, nil
}

// settle verifies or replaces one pending result. A provisional rewrite
// (results.CauseNoMap) is compared with the exact rewrite the learned map gives:
// identical, and the outputs judged exact, the result is registered as it
// is; otherwise, and for the other causes, an exact build reruns what it
// must and its result replaces the provisional one.
func (w *Worker) settle(ctx context.Context, r *results.Record, progress func(events.Event)) error {
	cur, unlock, err := w.lockedRecord(ctx, r)
	if err != nil || cur == nil {
		return err // rebuilt by a newer build that recorded its own state
	}
	step := settleFirst(cur.State, r.Cause == results.CauseNoMap)
	if step == settleNothing {
		unlock()
		return nil // settled meanwhile
	}
	w.setState(r, events.StateVerifying, "the path map is learned: checking the provisional result against it", progress)
	why := r.Why
	if step == settleCompare {
		ok, reason, err := w.confirm(ctx, r, progress)
		if err != nil {
			w.Log.Warn("confirming a provisional rewrite", zap.String("drv", r.Drv), zap.Error(err))
		}
		var stands bool
		if stands, why = afterCompare(ok, reason, err); stands {
			unlock()
			return nil
		}
	}
	unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	progress(events.Event{Kind: events.EventFallback, Message: r.Name + ": " + why + "; rebuilding exactly"})
	res, err := w.Builder.Build(ctx, r.Drv, build.BuildOptions{Exact: true, Deliver: true, NoLearn: true, Progress: progress, ResultsDir: r.ResultsDir, ResultOwner: r.Owner}, new(build.Outcome))
	var ran []string
	if err == nil {
		ran = res.Ran
	}
	state, settledWhy, settled := afterRebuild(why, ran, err, ctx.Err() != nil)
	if err != nil {
		if settled {
			w.setState(r, state, settledWhy, progress)
		}
		return fmt.Errorf("settling the result of %s: %w", r.Name, err)
	}
	w.repoint(ctx, r, res.Outputs)
	w.setState(r, state, settledWhy, progress)
	return nil
}

// settleStep is what settling a pending result does first.
type settleStep int

const (
	// settleNothing: the result was settled meanwhile.
	settleNothing settleStep = iota
	// settleCompare: a provisional rewrite (results.CauseNoMap) is compared with
	// the exact one the learned map gives; it may stand as it is.
	settleCompare
	// settleRebuild: an exact build reruns what it must and replaces it.
	settleRebuild
)

// settleFirst decides from the record's state, as read under the build
// lock, and whether it rests on a provisional rewrite (noMap).
func settleFirst(state events.ResultState, noMap bool) settleStep {
	switch {
	case !state.Pending():
		return settleNothing
	case noMap:
		return settleCompare
	}
	return settleRebuild
}

// afterCompare decides on a provisional rewrite compared with the exact
// one (confirm's answer): stands when confirm verified it in place;
// otherwise why is the reason the exact rebuild replaces it.
func afterCompare(confirmed bool, reason string, err error) (stands bool, why string) {
	if err != nil {
		return false, "it could not be compared with the exact rewrite: " + err.Error()
	}
	return confirmed, reason
}

// afterRebuild is the state the exact rebuild of a settled result leaves
// it in, and why: replaced (ran: the phases it reran), or unverified when
// it failed. settled is false when the rebuild was stopped (cancelled):
// the result stays pending for the next background work.
func afterRebuild(why string, ran []string, err error, stopped bool) (state events.ResultState, settledWhy string, settled bool) {
	switch {
	case err != nil && stopped:
		return "", "", false
	case err != nil:
		return events.StateUnverified, "the exact rebuild failed: " + logtail.FirstLine(err.Error()) + "; `nixlayer build --exact` retries", true
	case len(ran) == 0:
		return events.StateReplaced, why + "; replaced by an exact rebuild (nothing to rerun)", true
	}
	return events.StateReplaced, why + "; replaced by an exact rebuild (ran: " + strings.Join(ran, " ") + ")", true
}

// confirm compares a provisional rewrite with the exact one; when they are
// identical and the outputs are exact, it verifies the result's layers,
// registers the outputs and repoints the result links. reason says why not.
func (w *Worker) confirm(ctx context.Context, r *results.Record, progress func(events.Event)) (ok bool, reason string, err error) {
	for _, id := range append([]string{r.ReusedTop, r.RewriteLayer, r.Top}, r.Created...) {
		if _, err := w.Layers.Get(id); err != nil {
			return false, "the provisional result's layers are gone", nil
		}
	}
	chain, err := layers.PhaseChain(w.Layers, r.ReusedTop, r.Reused)
	if err != nil {
		return false, "", err
	}
	if phase, ok := firstUnverified(chain); ok {
		return false, "it reuses layers of a result that was not verified (" + phase + ")", nil
	}
	j, err := w.Run.Prepare(ctx, r.Drv, io.Discard)
	if err != nil {
		return false, "", err
	}
	plan, err := w.Plans.Plan(j, planner.Options{})
	if err != nil {
		return false, "", err
	}
	m, err := w.Learner.PathMap(ctx, j, plan, r.ReusedTop, r.Reused, progress)
	if err != nil {
		return false, "its path map could not be learned: " + logtail.FirstLine(err.Error()), nil
	}
	state, err := w.Run.LoadState(r.ReusedTop)
	if err != nil {
		return false, "", err
	}
	scratch := &build.Result{}
	exact, _, err := w.Builder.RewriteLayer(j, r.ReusedTop, state, r.Old2New, scratch, rewrite.Learned{Map: m})
	if err != nil {
		return false, "", err
	}
	defer w.Builder.DropLayers(exact)
	v := scratch.Rewrite
	var diff, unexplained []string
	if len(v.Failed) == 0 {
		if diff, err = w.compareLayers(r.RewriteLayer, exact); err != nil {
			return false, "", err
		}
		for _, u := range v.Unexplained {
			unexplained = append(unexplained, m.PathIn(u.Path, j.Drv.Outputs))
		}
	}
	same, how := compareRewrites(v.Failed, diff, unexplained)
	if !same {
		return false, how, nil
	}
	if !v.Exact {
		topRoot, err := w.Layers.Mount(r.Top)
		if err != nil {
			return false, "", err
		}
		tree, err := w.Layers.Mount(r.RewriteLayer)
		if err != nil {
			w.Layers.Unmount(r.Top)
			return false, "", err
		}
		ex, err := w.Learner.JudgeOutputs(v, m, chain, plan.Phases, tree, j.Drv.Outputs, learn.OutputDirs(topRoot, j.Drv.Outputs))
		w.Layers.Unmount(r.RewriteLayer)
		w.Layers.Unmount(r.Top)
		if err != nil {
			return false, "", err
		}
		if !ex.Exact {
			return false, outputsNotExact(ex), nil
		}
		w.Learner.SaveExactness(r.Top, ex)
	}
	w.Builder.MarkVerified(append([]string{r.RewriteLayer}, r.Created...))
	res := &build.Result{TopLayer: r.Top, Verified: true}
	if err := w.Builder.Deliver(ctx, j, res, build.BuildOptions{Deliver: true, ResultsDir: r.ResultsDir, ResultOwner: r.Owner}, func(events.Event) {}); err != nil {
		return false, "", err
	}
	w.repoint(ctx, r, res.Outputs)
	w.setState(r, events.StateVerified, confirmedWhy(how, res.InStore), progress)
	return true, "", nil
}

// firstUnverified is the phase of the first layer of a chain that rests
// on an inexact rewrite (found: one does): a provisional result on it
// cannot be confirmed.
func firstUnverified(chain []*layers.Layer) (phase string, found bool) {
	for _, l := range chain {
		if !l.Meta.IsVerified() {
			return l.Meta.Phase, true
		}
	}
	return "", false
}

// compareRewrites judges a provisional rewrite against the exact one the
// learned map gives: failed are the exact rewrite's failures, diff the
// entries in which the two layers differ, unexplained the files (paths in
// the layer) whose bytes the map cannot explain. same says whether the
// provisional one can stand, how says how it compares, or why it cannot.
func compareRewrites(failed, diff, unexplained []string) (same bool, how string) {
	if len(failed) > 0 {
		return false, "the reused layers cannot be rewritten exactly (" + logtail.FirstFew(failed, 2) + ")"
	}
	// Files the map cannot explain are left as they are by the exact
	// rewrite (the provisional scan may have rewritten a hash in them): they
	// may differ, as their bytes are judged on the outputs either way.
	left := map[string]bool{}
	for _, u := range unexplained {
		left[strings.TrimPrefix(u, "/")] = true
	}
	var differ []string
	for _, name := range diff {
		if !left[strings.TrimPrefix(strings.TrimPrefix(name, "./"), "/")] {
			differ = append(differ, name)
		}
	}
	switch {
	case len(differ) > 0:
		return false, fmt.Sprintf("the provisional rewrite differs from the exact one in %d file(s) (%s)", len(differ), logtail.FirstFew(differ, 3))
	case len(diff) > 0:
		return true, fmt.Sprintf("the provisional rewrite equals the exact one but in %d file(s) the path map cannot explain, which reach no output", len(diff))
	}
	return true, "the provisional rewrite was identical to the exact one"
}

// outputsNotExact is why a provisional rewrite equal to the exact one
// still cannot stand: the outputs built on it are not exact (ex).
func outputsNotExact(ex *verdict.Exactness) string {
	return "the provisional rewrite equals the exact one, but the outputs are NOT exact (" + ex.Summary + ")"
}

// confirmedWhy is the state's reason for a provisional result confirmed
// in place: how it compared, and where its outputs are.
func confirmedWhy(how string, inStore bool) string {
	where := "registered in the Nix store"
	if !inStore {
		where = "kept in the cache (only root can register it in the store)"
	}
	return how + ": verified without a rebuild, " + where
}

// repoint moves the record's result links that still point at its
// provisional outputs to the new ones, and leaves, where a provisional
// copy in the cache was, a link to the store path (paths printed earlier
// keep working without a second copy). The links of another user's result
// (the daemon's caller, who made them) are left alone: root never replaces
// a path a user chose. Theirs point at the copy, which becomes a link to
// the store path, rooted for the garbage collector.
func (w *Worker) repoint(ctx context.Context, r *results.Record, outputs map[string]string) {
	for name, old := range r.Outputs {
		cur := outputs[name]
		if cur == "" || cur == old || !nixstore.IsStorePath(cur) {
			continue
		}
		if link := r.Links[name]; link != "" && r.Owner == nil {
			if target, err := os.Readlink(link); err == nil && target == old {
				build.RemoveLink(link)
				if err := nixstore.AddGCRoot(ctx, cur, link); err != nil {
					w.Log.Warn("repointing a result link", zap.String("link", link), zap.Error(err))
				}
			}
		}
		w.replaceCacheCopy(ctx, r, old, cur)
	}
	r.Outputs = outputs
}

// replaceCacheCopy leaves, where a result's copy in the cache (old) was,
// a link to its new place cur: paths printed earlier keep working without
// a second copy. old is only ever in a results directory root owns; a
// daemon user's link to it is the user's and is never touched.
func (w *Worker) replaceCacheCopy(ctx context.Context, r *results.Record, old, cur string) {
	dir := cmp.Or(r.ResultsDir, w.Builder.ResultsDir(""))
	if filepath.Dir(old) != filepath.Clean(dir) {
		return
	}
	if err := storetree.RemoveTree(old); err != nil {
		w.Log.Warn("replacing a result's copy in the cache", zap.String("path", old), zap.Error(err))
		return
	}
	var err error
	if r.Owner != nil && nixstore.IsStorePath(cur) {
		err = nixstore.AddGCRoot(ctx, cur, old) // the only root the user's links have
	} else {
		err = os.Symlink(cur, old)
	}
	if err != nil {
		w.Log.Warn("linking a result's copy in the cache to the store", zap.String("path", old), zap.Error(err))
	}
}

// compareLayers lists the entries in which two layers over the same parent
// differ (contents, type, mode, link target; not times).
func (w *Worker) compareLayers(a, b string) ([]string, error) {
	ea, err := w.layerEntries(a, nil)
	if err != nil {
		return nil, err
	}
	eb, err := w.layerEntries(b, nil)
	if err != nil {
		return nil, err
	}
	return differingEntries(ea, eb), nil
}

// differingEntries lists the names whose digests differ between two
// layers' entries (layerEntries), or that only one has.
func differingEntries(ea, eb map[string]string) []string {
	var diff []string
	for name, x := range ea {
		if y, ok := eb[name]; !ok || x != y {
			diff = append(diff, name)
		}
	}
	for name := range eb {
		if _, ok := ea[name]; !ok {
			diff = append(diff, name)
		}
	}
	sort.Strings(diff)
	return diff
}

// maxSubstSize bounds the files layerEntries rewrites in memory; a bigger
// one is digested as it is (the audit then counts it as differing if it
// holds an output path: it drops more, never less).
const maxSubstSize = 32 << 20

// layerEntries digests each entry of a layer's diff; subst, when set,
// first rewrites names, link targets and contents (the audit reads a
// layer built with other output paths as built with the current ones).
func (w *Worker) layerEntries(id string, subst *strings.Replacer) (map[string]string, error) {
	rc, err := w.Layers.Diff(id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	entries := map[string]string{}
	err = layers.EachTarEntry(rc, func(h *tar.Header, content io.Reader) error {
		sum := sha256.New()
		name, link := h.Name, h.Linkname
		if subst != nil && h.Size <= maxSubstSize {
			data, err := io.ReadAll(content)
			if err != nil {
				return err
			}
			name, link = subst.Replace(name), subst.Replace(link)
			io.WriteString(sum, subst.Replace(string(data)))
		} else if _, err := io.Copy(sum, content); err != nil {
			return err
		}
		entries[name] = fmt.Sprintf("%c %o %s %x", h.Typeflag, h.Mode, link, sum.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the diff of layer %s: %w", id, err)
	}
	return entries, nil
}

// setState moves a record to a new state and saves it, telling progress.
func (w *Worker) setState(r *results.Record, s events.ResultState, why string, progress func(events.Event)) {
	r.State, r.Why = s, why
	if err := results.Save(w.CacheDir, r); err != nil {
		w.Log.Warn("saving a result's state", zap.Error(err))
	}
	progress(r.Event())
}

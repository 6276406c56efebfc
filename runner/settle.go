package runner

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

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/rewrite"
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
func (e *Engine) Learn(ctx context.Context, drvPath string, ro layercache.RegistryOptions, v *Viewer, progress func(events.Event)) error {
	if progress == nil {
		progress = func(events.Event) {}
	}
	silent := func(events.Event) {}
	progressFor := func(r *ResultRecord) func(events.Event) {
		if v.ResultFor(r) == nil {
			return silent
		}
		return progress
	}
	hidden := map[string]bool{} // derivations of results v may not see
	j, err := e.prepare(ctx, drvPath, io.Discard)
	if err != nil {
		return err
	}
	defer e.announceBackground(j.pkg, drvPath)() // waiting counts: it will run
	unlock, err := e.lockFile(ctx, "background", j.pkg, func() {
		progress(events.Event{Kind: events.EventWait, Message: "waiting for the background work on " + j.pkg + " that is running"})
	})
	if err != nil {
		return err
	}
	defer unlock()
	// A foreground build that reruns the chain being learned (for a
	// result to settle or for the newest chain) stops all of it: the pair it
	// makes teaches the map, and its own background work starts after it.
	ctx, stopYield := e.yieldable(ctx, j.pkg)
	defer stopYield()
	yield := func() error {
		progress(events.Event{Kind: events.EventLearned, Message: j.pkg + ": " + errYielded.Error()})
		return nil
	}
	toLearn := []string{drvPath}
	learnedAny, tried := false, map[string]bool{}
	var errs []error
	for round := 0; round < 20; round++ {
		busy := false
		for _, r := range e.pendingRecords(j.pkg) {
			busy = true
			if err := e.settle(ctx, r, progressFor(r)); err != nil {
				if yielded(ctx) {
					return yield()
				}
				if ctx.Err() != nil {
					return err
				}
				errs = reportTo(v, r, errs, err, e.log)
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
			learned, err := e.learnNewest(ctx, d, ro, heard)
			if err != nil {
				if yielded(ctx) {
					return yield()
				}
				if ctx.Err() != nil {
					return err
				}
				if d == drvPath && !learnedAny && !busy {
					errs = append(errs, err)
				}
				e.log.Warn("learning a chain in the background", zap.String("drv", d), zap.Error(err))
			}
			learnedAny = learnedAny || learned
			busy = busy || learned
		}
		toLearn = nil
		for _, r := range e.auditsDue(j.pkg) {
			busy = true
			if err := e.audit(ctx, r, progressFor(r)); err != nil {
				if yielded(ctx) {
					return yield()
				}
				if ctx.Err() != nil {
					return err
				}
				errs = reportTo(v, r, errs, err, e.log)
			}
		}
		if !busy {
			break
		}
	}
	return errors.Join(errs...)
}

// reportTo adds err, from settling or auditing r, to the errors for v;
// about a result v may not see, it only logs it.
func reportTo(v *Viewer, r *ResultRecord, errs []error, err error, log *zap.Logger) []error {
	if v.ResultFor(r) == nil {
		log.Warn("settling or auditing another user's result", zap.String("drv", r.Drv), zap.Error(err))
		return errs
	}
	return append(errs, err)
}

// learnNewest learns the path maps of the newest verified chain of a
// derivation, if it lacks them; learned says whether it ran.
func (e *Engine) learnNewest(ctx context.Context, drvPath string, ro layercache.RegistryOptions, progress func(events.Event)) (learned bool, err error) {
	j, err := e.prepare(ctx, drvPath, io.Discard)
	if err != nil {
		return false, err
	}
	plan, err := e.plan(j, PlanOptions{RequireVerified: true})
	if err != nil {
		return false, err
	}
	if plan.Whole {
		return false, nil
	}
	top := lastReused(plan)
	if top == "" {
		return false, fmt.Errorf("%s has no cached layers to learn from: build it first", j.drv.Name)
	}
	unlock, err := e.lockFile(ctx, "learn", j.pkg, nil)
	if err != nil {
		return false, err
	}
	defer unlock()
	if e.storedMap(top) != nil {
		progress(events.Event{Kind: events.EventLearned, Message: j.drv.Name + ": path maps already learned"})
		e.layerCache().PushBuilt(ctx, top, ro, progress) // config.json pushTo (CI)
		return false, nil
	}
	n := 0
	for _, ph := range plan.Phases {
		if ph.Status == StatusRun {
			break
		}
		n++
	}
	chain, err := e.phaseChain(top, n)
	if err != nil {
		return false, err
	}
	if err := e.learnChain(ctx, j, plan, chain, learnAll, progress); err != nil {
		return true, err
	}
	e.layerCache().PushBuilt(ctx, top, ro, progress) // the chain with its maps
	return true, nil
}

// settle verifies or replaces one pending result. A provisional rewrite
// (CauseNoMap) is compared with the exact rewrite the learned map gives:
// identical, and the outputs judged exact, the result is registered as it
// is; otherwise, and for the other causes, an exact build reruns what it
// must and its result replaces the provisional one.
func (e *Engine) settle(ctx context.Context, r *ResultRecord, progress func(events.Event)) error {
	cur, unlock, err := e.lockedRecord(ctx, r)
	if err != nil || cur == nil {
		return err // rebuilt by a newer build that recorded its own state
	}
	if !cur.State.Pending() {
		unlock()
		return nil // settled meanwhile
	}
	e.setState(r, events.StateVerifying, "the path map is learned: checking the provisional result against it", progress)
	why := r.Why
	if r.Cause == CauseNoMap {
		ok, reason, err := e.confirm(ctx, r, progress)
		if err != nil {
			e.log.Warn("confirming a provisional rewrite", zap.String("drv", r.Drv), zap.Error(err))
			reason = "it could not be compared with the exact rewrite: " + err.Error()
		}
		if ok {
			unlock()
			return nil
		}
		why = reason
	}
	unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	progress(events.Event{Kind: events.EventFallback, Message: r.Name + ": " + why + "; rebuilding exactly"})
	res, err := e.Build(ctx, r.Drv, BuildOptions{Exact: true, Deliver: true, NoLearn: true, Progress: progress, ResultsDir: r.ResultsDir, ResultOwner: r.Owner})
	if err != nil {
		if ctx.Err() == nil {
			e.setState(r, events.StateUnverified, "the exact rebuild failed: "+firstLine(err.Error())+"; `nixlayer build --exact` retries", progress)
		}
		return fmt.Errorf("settling the result of %s: %w", r.Name, err)
	}
	e.repoint(ctx, r, res.Outputs)
	ran := "ran: " + strings.Join(res.Ran, " ")
	if len(res.Ran) == 0 {
		ran = "nothing to rerun"
	}
	e.setState(r, events.StateReplaced, why+"; replaced by an exact rebuild ("+ran+")", progress)
	return nil
}

// confirm compares a provisional rewrite with the exact one; when they are
// identical and the outputs are exact, it verifies the result's layers,
// registers the outputs and repoints the result links. reason says why not.
func (e *Engine) confirm(ctx context.Context, r *ResultRecord, progress func(events.Event)) (ok bool, reason string, err error) {
	for _, id := range append([]string{r.ReusedTop, r.RewriteLayer, r.Top}, r.Created...) {
		if _, err := e.layers.Get(id); err != nil {
			return false, "the provisional result's layers are gone", nil
		}
	}
	chain, err := e.phaseChain(r.ReusedTop, r.Reused)
	if err != nil {
		return false, "", err
	}
	for _, l := range chain {
		if !l.Meta.IsVerified() {
			return false, "it reuses layers of a result that was not verified (" + l.Meta.Phase + ")", nil
		}
	}
	j, err := e.prepare(ctx, r.Drv, io.Discard)
	if err != nil {
		return false, "", err
	}
	plan, err := e.plan(j, PlanOptions{})
	if err != nil {
		return false, "", err
	}
	m, err := e.pathMap(ctx, j, plan, r.ReusedTop, r.Reused, progress)
	if err != nil {
		return false, "its path map could not be learned: " + firstLine(err.Error()), nil
	}
	state, err := e.loadState(r.ReusedTop)
	if err != nil {
		return false, "", err
	}
	scratch := &Result{}
	exact, _, err := e.rewriteLayer(j, r.ReusedTop, state, r.Old2New, scratch, rewrite.Learned{Map: m})
	if err != nil {
		return false, "", err
	}
	defer e.dropLayers(exact)
	v := scratch.Rewrite
	if len(v.Failed) > 0 {
		return false, "the reused layers cannot be rewritten exactly (" + fewLines(v.Failed, 2) + ")", nil
	}
	diff, err := e.compareLayers(r.RewriteLayer, exact)
	if err != nil {
		return false, "", err
	}
	// Files the map cannot explain are left as they are by the exact
	// rewrite (the provisional scan may have rewritten a hash in them): they
	// may differ, as their bytes are judged on the outputs either way.
	unexplained := map[string]bool{}
	for _, u := range v.Unexplained {
		unexplained[strings.TrimPrefix(m.PathIn(u.Path, j.drv.Outputs), "/")] = true
	}
	var differ []string
	for _, name := range diff {
		if !unexplained[strings.TrimPrefix(strings.TrimPrefix(name, "./"), "/")] {
			differ = append(differ, name)
		}
	}
	if len(differ) > 0 {
		return false, fmt.Sprintf("the provisional rewrite differs from the exact one in %d file(s) (%s)", len(differ), fewLines(differ, 3)), nil
	}
	how := "the provisional rewrite was identical to the exact one"
	if len(diff) > 0 {
		how = fmt.Sprintf("the provisional rewrite equals the exact one but in %d file(s) the path map cannot explain, which reach no output", len(diff))
	}
	if !v.Exact {
		topRoot, err := e.layers.Mount(r.Top)
		if err != nil {
			return false, "", err
		}
		tree, err := e.layers.Mount(r.RewriteLayer)
		if err != nil {
			e.layers.Unmount(r.Top)
			return false, "", err
		}
		ex, err := e.judgeOutputs(v, m, chain, plan.Phases, tree, j.drv.Outputs, outputDirs(topRoot, j.drv.Outputs))
		e.layers.Unmount(r.RewriteLayer)
		e.layers.Unmount(r.Top)
		if err != nil {
			return false, "", err
		}
		if !ex.Exact {
			return false, "the provisional rewrite equals the exact one, but the outputs are NOT exact (" + ex.Summary + ")", nil
		}
		e.saveExactness(r.Top, ex)
	}
	e.markVerified(append([]string{r.RewriteLayer}, r.Created...))
	res := &Result{TopLayer: r.Top, Verified: true}
	if err := e.deliver(ctx, j, res, BuildOptions{Deliver: true, ResultsDir: r.ResultsDir, ResultOwner: r.Owner}, func(events.Event) {}); err != nil {
		return false, "", err
	}
	e.repoint(ctx, r, res.Outputs)
	where := "registered in the Nix store"
	if !res.InStore {
		where = "kept in the cache (only root can register it in the store)"
	}
	e.setState(r, events.StateVerified, how+": verified without a rebuild, "+where, progress)
	return true, "", nil
}

// repoint moves the record's result links that still point at its
// provisional outputs to the new ones, and leaves, where a provisional
// copy in the cache was, a link to the store path (paths printed earlier
// keep working without a second copy). The links of another user's result
// (the daemon's caller, who made them) are left alone: root never replaces
// a path a user chose. Theirs point at the copy, which becomes a link to
// the store path, rooted for the garbage collector.
func (e *Engine) repoint(ctx context.Context, r *ResultRecord, outputs map[string]string) {
	for name, old := range r.Outputs {
		cur := outputs[name]
		if cur == "" || cur == old || !nixstore.IsStorePath(cur) {
			continue
		}
		if link := r.Links[name]; link != "" && r.Owner == nil {
			if target, err := os.Readlink(link); err == nil && target == old {
				removeLink(link)
				if err := nixstore.AddGCRoot(ctx, cur, link); err != nil {
					e.log.Warn("repointing a result link", zap.String("link", link), zap.Error(err))
				}
			}
		}
		e.replaceCacheCopy(ctx, r, old, cur)
	}
	r.Outputs = outputs
}

// replaceCacheCopy leaves, where a result's copy in the cache (old) was,
// a link to its new place cur: paths printed earlier keep working without
// a second copy. old is only ever in a results directory root owns; a
// daemon user's link to it is the user's and is never touched.
func (e *Engine) replaceCacheCopy(ctx context.Context, r *ResultRecord, old, cur string) {
	dir := cmp.Or(r.ResultsDir, e.resultsDir(""))
	if filepath.Dir(old) != filepath.Clean(dir) {
		return
	}
	if err := nixstore.RemoveTree(old); err != nil {
		e.log.Warn("replacing a result's copy in the cache", zap.String("path", old), zap.Error(err))
		return
	}
	var err error
	if r.Owner != nil && nixstore.IsStorePath(cur) {
		err = nixstore.AddGCRoot(ctx, cur, old) // the only root the user's links have
	} else {
		err = os.Symlink(cur, old)
	}
	if err != nil {
		e.log.Warn("linking a result's copy in the cache to the store", zap.String("path", old), zap.Error(err))
	}
}

// compareLayers lists the entries in which two layers over the same parent
// differ (contents, type, mode, link target; not times).
func (e *Engine) compareLayers(a, b string) ([]string, error) {
	ea, err := e.layerEntries(a, nil)
	if err != nil {
		return nil, err
	}
	eb, err := e.layerEntries(b, nil)
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
func (e *Engine) layerEntries(id string, subst *strings.Replacer) (map[string]string, error) {
	rc, err := e.layers.Diff(id)
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

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

package background

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/shellstate"
	"github.com/nixlayer/nixlayer/verify"
)

// The audit is the safety net for what no placement rule foresees: a layer
// whose content does not match its key (a program read an attribute the
// key covers only from a later phase, a corrupted layer). The background
// work (Learn, so it runs wherever and at whatever priority that runs)
// builds a resumed result again from scratch in the sandbox and compares
// it with the layered one. A difference is reported loudly (the record,
// `nixlayer status`, the editor, the log), the result is replaced by the
// clean build, and the layers involved are made stale so no lookup finds
// them again. How often: config.json's audit (cacheconfig.Config.AuditEvery).

// maxAuditFiles bounds the files an audit records.
const maxAuditFiles = 50

// auditsDue are the results of a package whose audit is owed, oldest
// first; those still pending are settled first.
func (w *Worker) auditsDue(pkg string) []*results.Record {
	all, _ := results.List(w.CacheDir)
	var out []*results.Record
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Package == pkg && all[i].Audit.Due() && !all[i].State.Pending() {
			out = append(out, all[i])
		}
	}
	return out
}

// audit builds a resumed result again from scratch and compares; see the
// top of this file. It records what it found on the result's record.
func (w *Worker) audit(ctx context.Context, r *results.Record, progress func(events.Event)) error {
	if cur, err := results.Of(w.CacheDir, r.Drv); err != nil || cur == nil || !cur.Built.Equal(r.Built) || !cur.Audit.Due() {
		return err // audited meanwhile, or rebuilt by a newer build
	}
	t0 := time.Now()
	progress(events.Event{Kind: events.EventAudit, Drv: r.Drv, Message: r.Name + ": auditing the resumed result: building it again from scratch to compare"})
	j, err := w.Run.Prepare(ctx, r.Drv, io.Discard)
	if err != nil {
		return w.auditEnded(ctx, r, &results.Audit{State: results.AuditError, Why: "its derivation cannot be prepared: " + logtail.FirstLine(err.Error())}, t0, progress)
	}
	plan, err := w.Plans.Plan(j, planner.Options{})
	if err != nil {
		return w.auditEnded(ctx, r, &results.Audit{State: results.AuditError, Why: logtail.FirstLine(err.Error())}, t0, progress)
	}
	layered, err := layers.PhaseChain(w.Layers, r.Top, len(plan.Phases))
	if err != nil {
		return w.auditEnded(ctx, r, &results.Audit{State: results.AuditError, Why: "the result's layers are gone (gc?): " + logtail.FirstLine(err.Error())}, t0, progress)
	}
	sc := w.Run.NewScratch(plan)
	defer sc.Close()
	clean, err := w.cleanBuild(ctx, j, plan, sc, progress)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // stays due: the next background work audits it
		}
		return w.auditEnded(ctx, r, &results.Audit{State: results.AuditError, Why: "the clean build failed: " + logtail.FirstLine(err.Error())}, t0, progress)
	}
	cleanTop := clean[len(clean)-1]
	files, err := w.outputDifferences(j, r.Top, cleanTop)
	if err != nil {
		return w.auditEnded(ctx, r, &results.Audit{State: results.AuditError, Why: "comparing with the clean build: " + logtail.FirstLine(err.Error())}, t0, progress)
	}
	if len(files) == 0 {
		return w.auditEnded(ctx, r, &results.Audit{State: results.AuditPassed, Why: "a clean build from scratch equals the layered result"}, t0, progress)
	}
	a := &results.Audit{State: results.AuditFailed, Files: files[:min(len(files), maxAuditFiles)]}
	first := -1
	for i, l := range layered {
		differs, err := w.phaseDiffers(l, clean[i], j.Drv.Outputs)
		if err != nil {
			w.Log.Warn("audit: comparing a phase with the clean build", zap.String("phase", l.Meta.Phase), zap.Error(err))
			differs = true // unsure: stale
		}
		if differs {
			a.Phases = append(a.Phases, l.Meta.Phase)
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		// Every phase's own changes match, so what differs came between
		// them (a rewrite): the top phase and what rests on it go.
		first = len(layered) - 1
	}
	stale := layered[first]
	a.Attrs = changedAttributes(stale.Meta.DrvPath, j.Drv)
	if a.Dropped, err = w.retireFrom(stale.ID, fmt.Sprintf("stale: an audit of %s found it differs from a clean build", j.Drv.Name)); err != nil {
		w.Log.Error("audit: making the stale layers unusable", zap.Error(err))
	}
	a.Why = auditFinding(a, len(files), stale.Meta.Phase, stale.Meta.DrvPath == j.Drv.Path)
	w.Log.Error("audit: a resumed result differs from a clean build", zap.String("drv", r.Drv),
		zap.Strings("phases", a.Phases), zap.Strings("attributes", a.Attrs), zap.Int("files", len(files)),
		zap.String("firstFile", files[0].Output+"/"+files[0].Path), zap.Strings("dropped", a.Dropped))
	return w.replaceAudited(ctx, j, r, a, cleanTop, t0, progress)
}

// cleanBuild runs every phase of the plan with the real output paths on
// scratch layers, as a cold build would, and returns their layers.
func (w *Worker) cleanBuild(ctx context.Context, j *phaserun.Job, plan *planner.Plan, sc *phaserun.Scratch, progress func(events.Event)) ([]string, error) {
	var state *shellstate.Delta
	if j.Splittable && j.Probe != nil {
		state = j.Probe.Start
	}
	parent := ""
	n := len(plan.Phases)
	clean := make([]string, n)
	for i, ph := range plan.Phases {
		progress(events.Event{Kind: events.EventAudit, Phase: ph.Name, Index: i + 1, Total: n, Drv: j.Drv.Path, Message: fmt.Sprintf("audit: [%d/%d] %s from scratch", i+1, n, ph.Name)})
		id, next, err := sc.Run(ctx, j, i, parent, state, "audit")
		if err != nil {
			return nil, err
		}
		clean[i], parent, state = id, id, next
	}
	return clean, nil
}

// outputDifferences lists the output files in which two layers' trees
// differ (as verify compares: contents, type, executable bit, links).
func (w *Worker) outputDifferences(j *phaserun.Job, a, b string) ([]results.Difference, error) {
	rootA, err := w.Layers.Mount(a)
	if err != nil {
		return nil, err
	}
	defer w.Layers.Unmount(a)
	rootB, err := w.Layers.Mount(b)
	if err != nil {
		return nil, err
	}
	defer w.Layers.Unmount(b)
	var out []results.Difference
	for _, name := range slices.Sorted(maps.Keys(j.Drv.Outputs)) {
		base := filepath.Base(j.Drv.Outputs[name])
		diffs, err := verify.Compare(filepath.Join(rootA, "store", base), filepath.Join(rootB, "store", base))
		if err != nil {
			return nil, err
		}
		for _, d := range diffs {
			d.Output = name
			out = append(out, d)
		}
	}
	return out, nil
}

// phaseDiffers compares a phase layer of the layered chain with the clean
// build's layer of the same phase: their own changes, with the output
// paths the layer was built with read as the current ones (whole hashes
// only, so a layer that holds path fragments counts as differing — the
// audit then drops more, never less).
func (w *Worker) phaseDiffers(l *layers.Layer, cleanID string, outputs map[string]string) (bool, error) {
	var pairs []string
	for name, p := range outputs {
		if old := l.Meta.Outputs[name]; old != "" && old != p {
			pairs = append(pairs, nixstore.HashPart(old), nixstore.HashPart(p))
		}
	}
	var subst *strings.Replacer
	if len(pairs) > 0 {
		subst = strings.NewReplacer(pairs...)
	}
	a, err := w.layerEntries(l.ID, subst)
	if err != nil {
		return false, err
	}
	b, err := w.layerEntries(cleanID, nil)
	if err != nil {
		return false, err
	}
	// The stdenv dumps the environment there as every step sources setup
	// (dumpVars): a reused layer holds the dump of the derivation that
	// built it, which the next step overwrites before anything reads it.
	delete(a, envDump)
	delete(b, envDump)
	diff := differingEntries(a, b)
	if len(diff) > 0 {
		w.Log.Warn("audit: a phase's layer differs from the clean build's", zap.String("phase", l.Meta.Phase), zap.Strings("files", diff[:min(len(diff), 10)]))
	}
	return len(diff) > 0, nil
}

// envDump is the stdenv's dump of the environment in the build directory,
// as a layer's entries name it.
const envDump = "build/env-vars"

// changedAttributes are the attributes in which the derivation that built
// a layer differs from cur, output paths aside (nil for the same one).
func changedAttributes(builtBy string, cur *drv.Derivation) []string {
	if builtBy == "" || builtBy == cur.Path {
		return nil
	}
	od, err := drv.Read(builtBy)
	if err != nil {
		return []string{"(unknown: the derivation that built it is gone)"}
	}
	was, err1 := phaserun.Attributes(od)
	now, err2 := phaserun.Attributes(cur)
	if err1 != nil || err2 != nil {
		return []string{"(unknown: unreadable attributes)"}
	}
	return differingEntries(was, now)
}

// auditFinding is the one line that says what a failed audit found.
func auditFinding(a *results.Audit, nfiles int, stalePhase string, sameDrv bool) string {
	var files []string
	for _, f := range a.Files {
		files = append(files, f.Output+"/"+f.Path)
	}
	why := fmt.Sprintf("AUDIT FOUND A STALE LAYER: the layered result differs from a clean build in %d file(s) (%s)", nfiles, logtail.FirstFew(files, 3))
	if len(a.Phases) > 0 {
		why += "; phases that differ: " + strings.Join(a.Phases, " ")
	}
	switch {
	case sameDrv:
		why += "; the stale layers were built by this same derivation (a layer changed after it was made?)"
	case len(a.Attrs) > 0:
		why += "; attributes changed since " + stalePhase + "'s layer was built: " + logtail.FirstFew(a.Attrs, 8)
	}
	return why + "; the layers from " + stalePhase + " on are dropped"
}

// retireFrom makes a layer and every layer built on it stale; it returns
// them.
func (w *Worker) retireFrom(id, why string) ([]string, error) {
	all, doomed, err := w.Layers.WithDescendants(id)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []string
	for _, l := range all {
		if !doomed[l.ID] || l.Meta.KindOf() == layers.KindLearnScratch {
			continue
		}
		if err := w.Layers.Retire(l.ID, why); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, l.ID)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("retiring stale layers: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// replaceAudited puts the clean build where the stale result was: into
// the Nix store when the stale outputs can leave it (Nix cannot replace a
// valid path in place: they are deleted first, which fails while anything
// else uses them), else into the cache with the result links repointed
// there, and says which.
func (w *Worker) replaceAudited(ctx context.Context, j *phaserun.Job, r *results.Record, a *results.Audit, cleanTop string, t0 time.Time, progress func(events.Event)) error {
	cur, unlock, err := w.lockedRecord(ctx, r)
	if err != nil || cur == nil {
		w.Log.Warn("audit: a newer build replaced the audited result; it reuses no stale layer now", zap.String("drv", r.Drv))
		return err
	}
	defer unlock()
	r = cur
	var stuck []string // valid stale outputs Nix would not delete
	var inStore []string
	for _, name := range slices.Sorted(maps.Keys(j.Drv.Outputs)) {
		p := j.Drv.Outputs[name]
		if r.Outputs[name] == p {
			inStore = append(inStore, p)
		}
	}
	links := r.Links
	if r.Owner != nil {
		links = nil // a daemon user's links are the user's: root never touches them
	}
	if len(inStore) > 0 {
		for _, p := range inStore {
			for name, link := range links {
				if target, err := os.Readlink(link); err == nil && target == p && r.Outputs[name] == p {
					build.RemoveLink(link)
				}
			}
		}
		if err := nixstore.Delete(ctx, inStore); err != nil {
			w.Log.Warn("audit: the stale outputs stay in the Nix store", zap.Strings("paths", inStore), zap.Error(err))
			stuck = inStore
		}
	}
	res := &build.Result{TopLayer: cleanTop, Verified: len(stuck) == 0}
	bo := build.BuildOptions{Deliver: true, ResultsDir: r.ResultsDir, ResultOwner: r.Owner}
	if err := w.Builder.Deliver(ctx, j, res, bo, func(events.Event) {}); err != nil {
		a.Why += "; delivering the clean build failed: " + logtail.FirstLine(err.Error())
		return w.auditEnded(ctx, r, a, t0, progress)
	}
	// The result links: into the store, or to the copy in the cache.
	for name, link := range links {
		p := res.Outputs[name]
		if target, err := os.Readlink(link); p == "" || (err == nil && target != r.Outputs[name]) {
			continue // the user pointed it elsewhere since
		}
		build.RemoveLink(link)
		if res.InStore {
			err = nixstore.AddGCRoot(ctx, p, link)
		} else {
			err = os.Symlink(p, link)
		}
		if err != nil {
			w.Log.Warn("audit: repointing a result link", zap.String("link", link), zap.Error(err))
		}
	}
	for name, old := range r.Outputs {
		if cur := res.Outputs[name]; cur != old {
			w.replaceCacheCopy(ctx, r, old, cur) // the stale copy in the cache goes
		}
	}
	r.Outputs = res.Outputs
	switch {
	case len(stuck) > 0:
		a.Why += "; the clean build is in the cache and the result links point there: the stale " + strings.Join(stuck, " ") + " stays in the Nix store while something uses it (nix-store --delete it, then nixlayer build registers the clean one)"
	case res.InStore:
		a.Why += "; replaced by the clean build, registered in the Nix store"
	default:
		a.Why += "; replaced by the clean build (kept in the cache)"
	}
	return w.auditEndedLocked(r, a, t0, progress)
}

// auditEnded records what an audit found (taking the derivation's lock).
func (w *Worker) auditEnded(ctx context.Context, r *results.Record, a *results.Audit, t0 time.Time, progress func(events.Event)) error {
	cur, unlock, err := w.lockedRecord(ctx, r)
	if err != nil || cur == nil {
		return err
	}
	defer unlock()
	return w.auditEndedLocked(cur, a, t0, progress)
}

// lockedRecord takes the derivation's build lock and reads its record:
// nil (and no lock held) when a newer build has recorded another result.
func (w *Worker) lockedRecord(ctx context.Context, r *results.Record) (*results.Record, func(), error) {
	unlock, err := w.Locks.Exclusive(ctx, cachelock.Derivation, r.Drv, nil)
	if err != nil {
		return nil, nil, err
	}
	cur, err := results.Of(w.CacheDir, r.Drv)
	if err != nil || cur == nil || !cur.Built.Equal(r.Built) {
		unlock()
		return nil, nil, err
	}
	return cur, unlock, nil
}

func (w *Worker) auditEndedLocked(r *results.Record, a *results.Audit, t0 time.Time, progress func(events.Event)) error {
	a.Took, a.At = time.Since(t0), time.Now()
	r.Audit = a
	switch a.State {
	case results.AuditFailed:
		w.setState(r, events.StateReplaced, a.Why, progress)
	default:
		if err := results.Save(w.CacheDir, r); err != nil {
			w.Log.Warn("saving a result's audit", zap.Error(err))
		}
		progress(events.Event{Kind: events.EventAudit, Drv: r.Drv, State: r.State, Message: r.Name + ": audit " + string(a.State) + ": " + a.Why})
	}
	if a.State == results.AuditError {
		w.Log.Warn("audit could not be made", zap.String("drv", r.Drv), zap.String("why", a.Why))
	}
	return nil
}

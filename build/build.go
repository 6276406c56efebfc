// Package build builds a derivation the layered way, as named steps:
// lock the derivation, prepare it (phaserun), plan (Planner, over planner),
// pull what the layer caches hold of the phases to run (layercache), repair
// a damaged reused chain, reuse the cached prefix, rewrite layers built for
// other output paths and judge the outputs (resume.go), run the remaining
// phases on new layers, record the result's state (record.go), deliver it
// (deliver.go), learn a path map from the pair it makes (learn), push and
// collect. It sends the typed events every face shows. runner's Engine
// wires it, starts the background work a build leaves, and is what the
// faces call; the background work calls it for exact rebuilds.
package build

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/cacheconfig"
	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/jobplan"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/learn"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/shellstate"
	"github.com/nixlayer/nixlayer/verdict"
)

// BuildOptions control one build.
type BuildOptions struct {
	planner.Options
	// Log receives the builder's output as it runs.
	Log io.Writer
	// Progress receives build events (phase started, cached, done, …).
	Progress func(events.Event)
	// Deliver registers the outputs in the Nix store when the result can
	// be trusted and the store is writable.
	Deliver bool
	// LocksHeld: Nix holds the output locks (hook mode).
	LocksHeld bool
	// ResultLink is the ./result symlink to create ("" for none).
	ResultLink string
	// RecordLink is the result link the caller makes itself (absolute),
	// recorded with the result so that background verification repoints
	// it into the store.
	RecordLink string
	// Exact rebuilds with the real output paths when reused layers cannot
	// be rewritten exactly, instead of keeping an unverified result, and
	// waits for (or does) the learning of a path map the reused layers
	// lack, instead of delivering a provisional result at once.
	Exact bool
	// NeverSlowerThanFull (the hook; implies Exact): when the reused layers
	// have no path map and learning it would end later than a full build,
	// build every phase with the new output paths, as Nix would (decided
	// with the stored phase times); the background learner then learns
	// that chain.
	NeverSlowerThanFull bool
	// NoLearn starts no background work after the build (the background
	// work's own builds; `nixlayer build --no-learn`).
	NoLearn bool
	// ResultsDir is where results that stay outside the store go (default
	// <cache>/results); the daemon gives each user a private one.
	ResultsDir string
	// ResultOwner, when set, owns those results (the daemon's caller).
	ResultOwner *results.Owner
	// Registry: the layer caches' switches for this build.
	Registry layercache.RegistryOptions
}

// Result is what a build produced.
type Result struct {
	Plan *planner.Plan `json:"plan"`
	// Outputs maps output names to where the result is: store paths when
	// InStore, otherwise directories in the cache.
	Outputs map[string]string `json:"outputs"`
	InStore bool              `json:"inStore"`
	// Verified is false when the result rests on a forced reuse or an
	// inexact rewrite; such results never enter the Nix store.
	Verified bool             `json:"verified"`
	Rewrite  *rewrite.Verdict `json:"rewrite,omitempty"`
	// Exactness is the verdict on the outputs of a build that reused
	// layers built for other output paths: which rule decided and, when
	// inexact, the phase an exact build reruns from.
	Exactness *verdict.Exactness `json:"exactness,omitempty"`
	// Inexact is the verdict that made an exact build (--exact, the hook)
	// drop a resume and rerun from Inexact.RebuildFrom.
	Inexact *verdict.Exactness `json:"inexact,omitempty"`
	// State is the result's state (verified, provisional, unverified);
	// `nixlayer status` follows it as background work settles it.
	State events.ResultState `json:"state"`
	// Why says what is provisional or unverified about the result.
	Why      string        `json:"why,omitempty"`
	Ran      []string      `json:"ran"`
	Reused   []string      `json:"reused"`
	Duration time.Duration `json:"duration"`
	TopLayer string        `json:"topLayer"`
}

// PhaseError is a build that failed in a phase; its layer is kept.
type PhaseError struct {
	Drv, Name, Phase string
	Exit             int
	LogTail          string
	Layer            string
	CacheDir         string
}

func (e *PhaseError) Error() string {
	cache := ""
	if e.CacheDir != cacheconfig.DefaultDir() {
		cache = " --cache " + e.CacheDir
	}
	return fmt.Sprintf("builder for '%s' failed in %s with exit code %d; last log lines:\n%s\nInspect the failed state with: nixlayer shell%s --at failed %s",
		e.Drv, e.Phase, e.Exit, indent(e.LogTail), cache, e.Drv)
}

func indent(s string) string {
	if s == "" {
		return "  (no output)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// Builder builds derivations on one cache's layers.
type Builder struct {
	Layers   *layers.Store
	CacheDir string
	Log      *zap.Logger
	// Locks serialise builds of a derivation and removals.
	Locks cachelock.Locks
	// Run prepares derivations and runs their phases.
	Run *phaserun.Runner
	// Plans plans a prepared derivation.
	Plans *jobplan.Planner
	// Learner learns and stores the chains' path maps.
	Learner *learn.Learner
	// Caches are the layer caches (config.json layerCaches, pushTo).
	Caches *layercache.Cache
	// Rewriter, when set, adapts reused layers instead of the learned
	// path maps (tests).
	Rewriter rewrite.Rewriter
	// GC applies the cache's size limit after each build.
	GC Collector
}

// Collector applies the cache's size limit (config.json gc.maxSize); nil,
// nil when none is set.
type Collector interface {
	AutoGC(ctx context.Context) (*gc.Result, error)
}

// Build builds a derivation phase by phase, reusing cached layers. A
// result that rests on what is not yet verified is delivered at once as
// provisional (unless Exact). o receives what the work a build leaves to
// the background needs to know of it, failed builds included.
func (b *Builder) Build(ctx context.Context, drvPath string, bo BuildOptions, o *Outcome) (*Result, error) {
	if bo.NeverSlowerThanFull {
		bo.Exact = true
	}
	if bo.Exact {
		bo.RequireVerified = true
	}
	return b.build(ctx, drvPath, bo, o)
}

// Outcome is what the policy after a build needs to know of it.
type Outcome struct {
	Job  *phaserun.Job
	Plan *planner.Plan
	// provisional is the resume a provisional result rests on.
	provisional *resume
	created     []string
	// PairLearned: the build rebuilt phases of a chain with other output
	// paths and learned their map from the pair (no learner needed).
	PairLearned bool
}

func (b *Builder) build(ctx context.Context, drvPath string, bo BuildOptions, o *Outcome) (_ *Result, err error) {
	start := time.Now()
	logw := cmp.Or(bo.Log, io.Discard)
	progress := bo.Progress
	if progress == nil {
		progress = func(events.Event) {}
	}
	waited := false
	unlock, err := b.Locks.Exclusive(ctx, cachelock.Derivation, drvPath, func() {
		waited = true
		progress(events.Event{Kind: events.EventWait, Message: "waiting for another build of the same derivation to finish"})
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	if waited && bo.From == "" && phaserun.StoreDrvPath(drvPath) {
		// The build waited for may have registered the outputs: they come
		// back as at the start of a build, whatever it left in the cache.
		if outs, ok, err := AlreadyBuilt(ctx, drvPath, bo.ResultLink); err != nil {
			return nil, err
		} else if ok {
			progress(events.Event{Kind: events.EventDeliver, Message: "the build waited for registered the outputs in the Nix store"})
			return BuiltResult(outs), nil
		}
	}
	j, err := b.Run.Prepare(ctx, drvPath, logw)
	if err != nil {
		return nil, err
	}
	o.Job = j
	hist := buildindex.NewRecorder(b.CacheDir, b.Log, j.Drv.Path, j.Pkg, start)
	progress = hist.Observe(progress)
	defer func() { hist.End(err) }()
	if j.Drv.IsFixedOutput() {
		return b.buildWithNix(ctx, j, bo, progress, start)
	}
	// The chain is chosen and pinned beside other builds, never beside a
	// removal (cachelock.Removal).
	release, err := b.Locks.Shared(ctx, cachelock.Removal, "", func() {
		progress(events.Event{Kind: events.EventWait, Message: "waiting for a gc of the layer cache to finish"})
	})
	if err != nil {
		return nil, err
	}
	defer release()
	plan, err := b.Plans.Plan(j, bo.Options)
	if err != nil {
		return nil, err
	}
	o.Plan = plan
	// Phases missing here may be in a layer cache (config.json layerCaches).
	plan = b.pullMissing(ctx, j, plan, bo.Options, bo.Registry, progress)
	// A reused layer whose directory was deleted is dropped and rebuilt.
	if top := plan.LastReused(); top != "" {
		if err := b.Layers.CheckMount(top); err != nil {
			progress(events.Event{Kind: events.EventRepair, Message: fmt.Sprintf("a cached layer is damaged (%v); rebuilding from it", err)})
			broken, why, err := b.Layers.DropBroken(top)
			if broken != "" {
				b.Log.Warn("layer is damaged; removing it and its descendants", zap.String("layer", broken), zap.Error(why))
			}
			if err != nil {
				return nil, err
			}
			if plan, err = b.Plans.Plan(j, bo.Options); err != nil {
				return nil, err
			}
			o.Plan = plan
		}
	}
	defer b.pinChain(plan.LastReused())()
	release()
	fault.Point(fault.Planned)
	if plan.Rewrite != nil && bo.NeverSlowerThanFull {
		plan = b.Learner.FullIfFaster(ctx, j, plan, progress)
	}
	// Background work of the cache pauses while this build runs; a learner
	// at work on phases it reruns leaves them to it.
	var mark *foreground.Mark
	if foreground.WorkOf(ctx) == nil {
		mark = foreground.Put(b.CacheDir, j.Pkg, plan.RunKeys(), b.Log)
		defer mark.Done()
		ctx = foreground.With(ctx, mark)
	}
	b.yieldLearner(j.Pkg, plan, progress)
	// res.Plan is the plan carried out: a fallback replaces it (resume.go).
	res := &Result{Plan: plan, Verified: true}
	total := len(plan.Phases)
	progress(events.Event{Kind: events.EventPlan, Total: total, Message: planSummary(plan)})

	// Reuse the cached (or forced) prefix.
	parent := ""
	var state *shellstate.Delta
	for i, ph := range plan.Phases {
		if ph.Status == planner.StatusRun {
			break
		}
		parent = ph.Layer.ID
		res.Reused = append(res.Reused, ph.Name)
		if ph.Status == planner.StatusForced || ph.Layer.Unverified {
			res.Verified = false
		}
		progress(events.Event{Kind: events.EventCached, Phase: ph.Name, Index: i + 1, Total: total, Elapsed: ph.Layer.Duration, Layer: ph.Layer.ID})
	}
	if parent != "" {
		if state, err = b.Run.LoadState(parent); err != nil {
			return nil, err
		}
	} else if j.Splittable {
		state = j.Probe.Start
	}
	// "learn": "concurrent": a cold build's synthetic twin runs beside it.
	var tw *learn.Twin
	if parent == "" && plan.Rewrite == nil && j.Splittable && len(plan.Phases) > 1 && b.Rewriter == nil && learnsConcurrently(b.CacheDir) {
		tw = b.Learner.StartTwin(ctx, j, plan)
		defer tw.Wait(progress)
	}
	// Reused layers built with other output paths are rewritten; bytes the
	// path map cannot explain are judged on the outputs once the later
	// phases ran (resume.go; learn.Learner.JudgeOutputs).
	var rs *resume
	if plan.Rewrite != nil {
		if rs, parent, state, err = b.rewriteReused(ctx, j, plan, parent, state, res, bo.Exact, progress); err != nil {
			return nil, err
		}
		if rs != nil && rs.provisional {
			o.provisional, rs = rs, nil // settled in the background
		}
	}
	var ran []string // the layers this build made and kept
	for {
		top, created, err := b.runPlanned(ctx, j, res.Plan, parent, state, res, logw, progress, tw)
		ran = created
		var early errEndedEarly
		if errors.As(err, &early) {
			// Build it in one step from now on, as Nix runs it.
			b.Run.MarkEndsEarly(j, early.phase)
			progress(events.Event{Kind: events.EventFallback, Message: fmt.Sprintf("%s exits the builder, which ends a Nix build early: building %s in one step", early.phase, j.Drv.Name)})
			unlock()
			mark.Done() // the build again leaves its own
			return b.build(ctx, drvPath, bo, o)
		}
		if err != nil {
			return nil, err
		}
		if o.provisional != nil {
			o.created = created
		}
		parent = top
		if rs == nil {
			break
		}
		var again bool
		if rs, parent, state, again, err = b.judgeResume(ctx, j, res.Plan, rs, top, created, res, bo.Exact, progress); err != nil {
			return nil, err
		}
		if !again {
			break
		}
	}
	res.TopLayer = parent
	if res.Exactness != nil {
		b.Learner.SaveExactness(parent, res.Exactness) // for nixlayer verify
	}
	resultState(res, o)
	if err := b.Deliver(ctx, j, res, bo, progress); err != nil {
		return nil, err
	}
	b.recordResult(j, res, bo, o, progress)
	if res.Verified && tw == nil {
		o.PairLearned = b.Learner.LearnFromPair(ctx, res.Plan, ran, progress)
	}
	if res.Verified && len(res.Ran) > 0 {
		b.Caches.PushBuilt(ctx, res.TopLayer, bo.Registry, progress) // config.json pushTo (CI)
	}
	// The cache's size limit (config.json gc.maxSize) applies after each build.
	if collected, err := b.GC.AutoGC(ctx); err != nil {
		b.Log.Warn("automatic gc", zap.Error(err))
	} else if collected != nil && len(collected.Removed) > 0 {
		progress(events.Event{Kind: events.EventGC, Message: fmt.Sprintf("cache over its size limit: removed %d layers", len(collected.Removed))})
	}
	res.Duration = time.Since(start)
	progress(events.Event{Kind: events.EventFinished, Total: total, Elapsed: res.Duration})
	return res, nil
}

// runPlanned runs every phase the plan marks to run, over parent, and
// returns the top layer and the layers it created.
func (b *Builder) runPlanned(ctx context.Context, j *phaserun.Job, plan *planner.Plan, parent string, state *shellstate.Delta, res *Result, logw io.Writer, progress func(events.Event), tw *learn.Twin) (string, []string, error) {
	total := len(plan.Phases)
	var created []string
	for i, ph := range plan.Phases {
		if ph.Status != planner.StatusRun {
			continue
		}
		progress(events.Event{Kind: events.EventStart, Phase: ph.Name, Index: i + 1, Total: total, Follows: ph.Follows, Estimate: ph.Estimate, Message: ph.Reason})
		t0 := time.Now()
		id, next, perr := b.runPhase(ctx, j, plan, i, parent, state, res.Verified, logw)
		if perr != nil {
			var pe *PhaseError
			if errors.As(perr, &pe) {
				progress(events.Event{Kind: events.EventFailed, Phase: ph.Name, Index: i + 1, Total: total, Elapsed: time.Since(t0), Exit: pe.Exit, Layer: pe.Layer, Message: pe.LogTail})
			}
			return "", created, perr
		}
		parent, state = id, next
		created = append(created, id)
		if tw != nil {
			tw.PhaseDone(id)
		}
		res.Ran = append(res.Ran, ph.Name)
		progress(events.Event{Kind: events.EventDone, Phase: ph.Name, Index: i + 1, Total: total, Elapsed: time.Since(t0), Layer: id})
	}
	return parent, created, nil
}

func planSummary(p *planner.Plan) string {
	cached := 0
	for _, ph := range p.Phases {
		if ph.Status != planner.StatusRun {
			cached++
		}
	}
	return fmt.Sprintf("%s: %d phases, %d cached", p.Name, len(p.Phases), cached)
}

// runPhase runs phase i on a new layer over parent.
func (b *Builder) runPhase(ctx context.Context, j *phaserun.Job, plan *planner.Plan, i int, parent string, state *shellstate.Delta, verifiedSoFar bool, logw io.Writer) (string, *shellstate.Delta, error) {
	ph := plan.Phases[i]
	meta := layers.Meta{Kind: layers.KindPhase, Phase: ph.Name, Index: i, DrvPath: j.Drv.Path, DrvName: j.Drv.Name, Package: j.Pkg, Outputs: j.Drv.Outputs, Attrs: ph.KeyInputs}
	if plan.From != "" && plan.HasForced() {
		// Not what its key says: the requesting user's alone.
		uid := plan.Viewer.Owner()
		meta.PrivateTo = &uid
	}
	l, err := b.Layers.Create(parent, meta)
	if err != nil {
		return "", nil, err
	}
	var logBuf bytes.Buffer
	t0 := time.Now()
	r, err := b.Run.RunPhaseOn(ctx, j, plan, i, l.ID, state, io.MultiWriter(&logBuf, logw), false)
	if err != nil {
		// Interrupted (cancelled) or broken: the half-written layer goes now;
		// a writer killed before this point leaves it "running", and the
		// next run removes it.
		b.Layers.Unmount(l.ID)
		if derr := b.Layers.Delete(l.ID); derr != nil {
			b.Log.Warn("removing an interrupted layer", zap.Error(derr))
		}
		return "", nil, fmt.Errorf("%s of %s: %w", ph.Name, j.Drv.Name, err)
	}
	if !plan.Whole && r.Exit == 0 && !strings.Contains(string(r.Phases), "returned") {
		// The phase's code exited the builder: in Nix that ends the build.
		b.Layers.Unmount(l.ID)
		b.Layers.Delete(l.ID)
		return "", nil, errEndedEarly{ph.Name}
	}
	fault.PointAt(fault.AfterPhase, ph.Name)
	meta.Duration = time.Since(t0)
	meta.Started = t0
	next := r.Next
	if r.StateErr != nil {
		if r.Exit == 0 {
			return "", nil, fmt.Errorf("%s of %s: shell state lost: %v", ph.Name, j.Drv.Name, r.StateErr)
		}
		next = state // a failed phase: its state is not needed
	}
	if err := b.Run.SaveState(l.ID, next); err != nil {
		return "", nil, err
	}
	if err := b.Layers.SetData(l.ID, layers.DataLog, logBuf.Bytes()); err != nil {
		return "", nil, err
	}
	meta.Key = ph.Key
	if !verifiedSoFar {
		f := false
		meta.Verified = &f
	}
	switch {
	case r.Exit != 0:
		meta.Status = layers.StatusFailed
	case plan.From != "" && plan.HasForced():
		meta.Status = layers.StatusDerived
	default:
		meta.Status = layers.StatusComplete
	}
	if err := b.Layers.Finish(l.ID, meta); err != nil {
		return "", nil, err
	}
	if r.Exit != 0 {
		return "", nil, &PhaseError{Drv: j.Drv.Path, Name: j.Drv.Name, Phase: ph.Name, Exit: r.Exit, LogTail: logtail.Lines(withoutNixLines(logBuf.String()), 25), Layer: l.ID, CacheDir: b.CacheDir}
	}
	b.Log.Debug("phase done", zap.String("phase", ph.Name), zap.Duration("took", meta.Duration))
	return l.ID, next, nil
}

// withoutNixLines drops the stdenv's `@nix {…}` lines, which Nix consumes
// and users never see.
func withoutNixLines(log string) string {
	lines := strings.Split(log, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, "@nix ") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

// errEndedEarly: a phase's code exited the builder before the phase ended.
type errEndedEarly struct{ phase string }

func (e errEndedEarly) Error() string { return e.phase + " exited the builder" }

// learnsConcurrently: the cache's config.json says "learn": "concurrent".
func learnsConcurrently(cacheDir string) bool {
	cfg, err := cacheconfig.Read(cacheDir)
	return err == nil && cfg.LearnsConcurrently()
}

// yieldLearner tells the user that the learner at work on pkg's chain
// stops because this build is about to rebuild phases of that chain (the
// same keys): it would only take cores from this build, which learns the
// map from the pair or in front. The learner sees it in this build's mark.
func (b *Builder) yieldLearner(pkg string, plan *planner.Plan, progress func(events.Event)) {
	learner := results.Learner(b.CacheDir, pkg)
	if learner == nil || learner.PID == os.Getpid() {
		return
	}
	for _, ph := range plan.Phases {
		if plan.Runs(ph) && learner.Learning.HasKey(ph.Key) {
			progress(events.Event{Kind: events.EventBackground, Message: fmt.Sprintf("the background learner (pid %d) stops: this build rebuilds the chain it learns", learner.PID)})
			return
		}
	}
}

// pinChain keeps the top of a chain a build reuses mounted until the
// returned func: gc keeps mounted layers and every layer under them, and
// dropped attempts leave mounted layers.
func (b *Builder) pinChain(top string) func() {
	if top == "" {
		return func() {}
	}
	if _, err := b.Layers.Mount(top); err != nil {
		b.Log.Warn("pinning the reused chain", zap.String("layer", top), zap.Error(err))
		return func() {}
	}
	return func() { b.Layers.Unmount(top) }
}

// pullMissing pulls what the layer caches have of the phases a plan must
// run; it returns the plan to build, replanned when something was pulled.
func (b *Builder) pullMissing(ctx context.Context, j *phaserun.Job, plan *planner.Plan, po planner.Options, ro layercache.RegistryOptions, progress func(events.Event)) *planner.Plan {
	if plan.From != "" || firstToRun(plan) < 0 {
		return plan // nothing runs, or --from chose what to reuse
	}
	rep := b.Caches.PullMissing(ctx, Wanted(j, plan, StaleKeys(b.Layers)), ro, po.RequireVerified, progress)
	if rep == nil {
		return plan
	}
	np, err := b.Plans.Plan(j, po)
	if err != nil {
		return plan
	}
	explainAgainst(np, rep.Later, rep.Source)
	return np
}

package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nixlayer/nixlayer/internal/fault"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/shellstate"
)

// BuildOptions control one build.
type BuildOptions struct {
	PlanOptions
	// Log receives the builder's output as it runs.
	Log io.Writer
	// Progress receives build events (phase started, cached, done, …).
	Progress func(Event)
	// Deliver registers the outputs in the Nix store when the result can
	// be trusted and the store is writable.
	Deliver bool
	// LocksHeld: Nix holds the output locks (hook mode).
	LocksHeld bool
	// ResultLink is the ./result symlink to create ("" for none).
	ResultLink string
	// Exact rebuilds with the real output paths when reused layers cannot
	// be rewritten exactly, instead of keeping an unverified result.
	Exact bool
	// ResultsDir is where results that stay outside the store go (default
	// <cache>/results); the daemon gives each user a private one.
	ResultsDir string
	// ResultOwner, when set, owns those results (the daemon's caller).
	ResultOwner *Owner
	// Registry: the layer caches' switches for this build.
	Registry RegistryOptions
}

// Owner is a user and group on this machine.
type Owner struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// Result is what a build produced.
type Result struct {
	Plan *Plan `json:"plan"`
	// Outputs maps output names to where the result is: store paths when
	// InStore, otherwise directories in the cache.
	Outputs map[string]string `json:"outputs"`
	InStore bool              `json:"inStore"`
	// Verified is false when the result rests on a forced reuse or an
	// inexact rewrite; such results never enter the Nix store.
	Verified bool             `json:"verified"`
	Rewrite  *rewrite.Verdict `json:"rewrite,omitempty"`
	Ran      []string         `json:"ran"`
	Reused   []string         `json:"reused"`
	Duration time.Duration    `json:"duration"`
	TopLayer string           `json:"topLayer"`
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
	if e.CacheDir != DefaultCacheDir() {
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

// Build builds a derivation phase by phase, reusing cached layers.
func (e *Engine) Build(ctx context.Context, drvPath string, bo BuildOptions) (_ *Result, err error) {
	start := time.Now()
	if bo.Exact {
		bo.RequireVerified = true
	}
	logw := orDiscard(bo.Log)
	progress := bo.Progress
	if progress == nil {
		progress = func(Event) {}
	}
	unlock, err := e.lockFile(ctx, "drv-"+filepath.Base(drvPath), func() {
		progress(Event{Kind: EventWait, Message: "waiting for another build of the same derivation to finish"})
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	j, err := e.prepare(ctx, drvPath, logw)
	if err != nil {
		return nil, err
	}
	hist := e.newHistory(j, start)
	progress = hist.observe(progress)
	defer func() { hist.end(err) }()
	if j.drv.IsFixedOutput() {
		return e.buildWithNix(ctx, j, bo, progress, start)
	}
	plan, err := e.plan(j, bo.PlanOptions)
	if err != nil {
		return nil, err
	}
	// Phases missing here may be in a layer cache (config.json layerCaches).
	plan = e.pullMissing(ctx, j, plan, bo.PlanOptions, bo.Registry, progress)
	// A reused layer whose directory was deleted is dropped and rebuilt.
	if top := lastReused(plan); top != "" {
		if err := e.checkChain(top); err != nil {
			progress(Event{Kind: EventRepair, Message: fmt.Sprintf("a cached layer is damaged (%v); rebuilding from it", err)})
			if err := e.dropBroken(top); err != nil {
				return nil, err
			}
			if plan, err = e.plan(j, bo.PlanOptions); err != nil {
				return nil, err
			}
		}
	}
	res := &Result{Plan: plan, Verified: true}
	total := len(plan.Phases)
	progress(Event{Kind: EventPlan, Total: total, Message: planSummary(plan)})

	// Reuse the cached (or forced) prefix.
	parent := ""
	var state *shellstate.Delta
	for i, ph := range plan.Phases {
		if ph.Status == StatusRun {
			break
		}
		parent = ph.Layer.ID
		res.Reused = append(res.Reused, ph.Name)
		if ph.Status == StatusForced || ph.Layer.Unverified {
			res.Verified = false
		}
		progress(Event{Kind: EventCached, Phase: ph.Name, Index: i + 1, Total: total, Elapsed: ph.Layer.Duration, Layer: ph.Layer.ID})
	}
	if parent != "" {
		if state, err = e.loadState(parent); err != nil {
			return nil, err
		}
	} else if j.splittable {
		state = j.probe.Start
	}
	if plan.Rewrite != nil {
		rw := e.opts.Rewriter
		if rw == nil {
			m, err := e.pathMap(ctx, j, plan, parent, len(res.Reused), progress)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				e.log.Warn("no path map; falling back to hash substitution", zap.Error(err))
				progress(Event{Kind: EventLearned, Message: "path map not learned: " + err.Error()})
			}
			rw = rewrite.Learned{Map: m}
		}
		rewritten, next, err := e.rewriteLayer(j, parent, state, plan.Rewrite, res, rw)
		if err != nil {
			return nil, err
		}
		progress(Event{Kind: EventRewrite, Exact: res.Rewrite.Exact, Message: fmt.Sprintf("reused layers rewritten for the new output path: %s: %d files (%s)%s", verdictWord(res.Rewrite), res.Rewrite.Files, res.Rewrite.Method, whyText(res.Rewrite))})
		if !res.Rewrite.Exact && bo.Exact {
			// Never keep an inexact resume: keep the longest prefix whose
			// path map is exact and rebuild from the phase after it (the
			// one that produced what cannot be rewritten) with the real paths.
			e.layers.Delete(rewritten)
			keep, kparent, kstate, err := e.exactPrefix(ctx, j, plan, parent, len(res.Reused), res)
			if err != nil {
				return nil, err
			}
			why := "reused layers could not be rewritten exactly for the new output paths"
			if keep > 0 {
				progress(Event{Kind: EventFallback, Message: fmt.Sprintf("rewrite not exact; keeping %d phases rewritten exactly and rebuilding from %s with the real output paths", keep, plan.Phases[keep].Name)})
			} else {
				progress(Event{Kind: EventFallback, Message: "rewrite not exact; rebuilding every phase with the real output paths"})
			}
			res.Reused, res.Verified = res.Reused[:keep], true
			for i := keep; i < len(plan.Phases); i++ {
				if l := plan.Phases[i].Layer; l != nil {
					plan.Phases[i].Estimate = l.Duration
				}
				plan.Phases[i].Status, plan.Phases[i].Layer = StatusRun, nil
				plan.Phases[i].follow(plan.Phases[keep].Name)
			}
			plan.Phases[keep].Reason, plan.Phases[keep].Follows = why, ""
			if keep == 0 {
				plan.Rewrite = nil
			}
			parent, state = kparent, kstate
		} else {
			parent, state = rewritten, next
		}
	}

	for i, ph := range plan.Phases {
		if ph.Status != StatusRun {
			continue
		}
		progress(Event{Kind: EventStart, Phase: ph.Name, Index: i + 1, Total: total, Follows: ph.Follows, Estimate: ph.Estimate, Message: ph.Reason})
		t0 := time.Now()
		id, next, perr := e.runPhase(ctx, j, plan, i, parent, state, res.Verified, logw)
		var early errEndedEarly
		if errors.As(perr, &early) {
			// Build it in one step from now on, as Nix runs it.
			e.markEndsEarly(j, early.phase)
			progress(Event{Kind: EventFallback, Message: fmt.Sprintf("%s exits the builder, which ends a Nix build early: building %s in one step", early.phase, j.drv.Name)})
			unlock()
			return e.Build(ctx, drvPath, bo)
		}
		if perr != nil {
			var pe *PhaseError
			if errors.As(perr, &pe) {
				progress(Event{Kind: EventFailed, Phase: ph.Name, Index: i + 1, Total: total, Elapsed: time.Since(t0), Exit: pe.Exit, Layer: pe.Layer, Message: pe.LogTail})
			}
			return nil, perr
		}
		parent, state = id, next
		res.Ran = append(res.Ran, ph.Name)
		progress(Event{Kind: EventDone, Phase: ph.Name, Index: i + 1, Total: total, Elapsed: time.Since(t0), Layer: id})
	}
	res.TopLayer = parent
	if err := e.deliver(ctx, j, res, bo, progress); err != nil {
		return nil, err
	}
	if res.Verified && len(res.Ran) > 0 {
		e.pushBuilt(ctx, res.TopLayer, bo.Registry, progress) // config.json pushTo (CI)
	}
	// The cache's size limit (config.json gc.maxSize) applies after each build.
	if gc, err := e.AutoGC(ctx); err != nil {
		e.log.Warn("automatic gc", zap.Error(err))
	} else if gc != nil && len(gc.Removed) > 0 {
		progress(Event{Kind: EventGC, Message: fmt.Sprintf("cache over its size limit: removed %d layers", len(gc.Removed))})
	}
	res.Duration = time.Since(start)
	progress(Event{Kind: EventFinished, Total: total, Elapsed: res.Duration})
	return res, nil
}

func whyText(v *rewrite.Verdict) string {
	if v.Exact || len(v.Why) == 0 {
		return ""
	}
	return "; " + strings.Join(v.Why, "; ")
}

func verdictWord(v *rewrite.Verdict) string {
	if v.Exact {
		return "exact"
	}
	return "not verified"
}

func planSummary(p *Plan) string {
	cached := 0
	for _, ph := range p.Phases {
		if ph.Status != StatusRun {
			cached++
		}
	}
	return fmt.Sprintf("%s: %d phases, %d cached", p.Name, len(p.Phases), cached)
}

// runPhase runs phase i on a new layer over parent.
func (e *Engine) runPhase(ctx context.Context, j *job, plan *Plan, i int, parent string, state *shellstate.Delta, verifiedSoFar bool, logw io.Writer) (string, *shellstate.Delta, error) {
	ph := plan.Phases[i]
	meta := layers.Meta{Kind: layers.KindPhase, Phase: ph.Name, Index: i, DrvPath: j.drv.Path, DrvName: j.drv.Name, Package: j.pkg, Outputs: j.drv.Outputs, Attrs: ph.KeyInputs}
	l, err := e.layers.Create(parent, meta)
	if err != nil {
		return "", nil, err
	}
	root, err := e.layers.Mount(l.ID)
	if err != nil {
		return "", nil, err
	}
	defer e.layers.Unmount(l.ID)
	// The files Nix writes into the build directory (passAsFile,
	// .attrs.json/.attrs.sh) are this derivation's, also over layers an
	// earlier derivation built: they hold the edited attributes.
	if err := writeAttrsFiles(j, filepath.Join(root, "build")); err != nil {
		return "", nil, err
	}
	etc, err := os.MkdirTemp(e.opts.CacheDir, "etc-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(etc)
	var logBuf bytes.Buffer
	s := step{root: root, etc: etc, mode: "phase", phase: ph.Name, last: i == len(plan.Phases)-1, log: io.MultiWriter(&logBuf, logw)}
	if plan.Whole {
		s.mode = "whole"
	} else if state != nil {
		s.restore = state.Script()
	}
	t0 := time.Now()
	r, err := e.runStep(ctx, j, s)
	if err != nil {
		// Interrupted (cancelled) or broken: the half-written layer goes now;
		// a writer killed before this point leaves it "running", and the
		// next run removes it.
		e.layers.Unmount(l.ID)
		if derr := e.layers.Delete(l.ID); derr != nil {
			e.log.Warn("removing an interrupted layer", zap.Error(derr))
		}
		return "", nil, fmt.Errorf("%s of %s: %w", ph.Name, j.drv.Name, err)
	}
	if s.mode == "phase" && r.exit == 0 && !strings.Contains(string(r.phases), "returned") {
		// The phase's code exited the builder: in Nix that ends the build.
		e.layers.Unmount(l.ID)
		e.layers.Delete(l.ID)
		return "", nil, errEndedEarly{ph.Name}
	}
	fault.Point(fault.AfterPhase)
	meta.Duration = time.Since(t0)
	meta.Started = t0
	next := state
	if !plan.Whole {
		if caps, perr := shellstate.ParseDumps(r.dumps); perr == nil && len(caps) >= 2 {
			next = shellstate.Diff(caps[0], caps[1])
		} else if r.exit == 0 {
			return "", nil, fmt.Errorf("%s of %s: shell state lost: %v", ph.Name, j.drv.Name, perr)
		}
	}
	if err := e.saveState(l.ID, next); err != nil {
		return "", nil, err
	}
	if err := e.layers.SetData(l.ID, "log", logBuf.Bytes()); err != nil {
		return "", nil, err
	}
	meta.Key = ph.Key
	if !verifiedSoFar {
		f := false
		meta.Verified = &f
	}
	switch {
	case r.exit != 0:
		meta.Status = layers.StatusFailed
	case plan.From != "" && hasForced(plan):
		meta.Status = layers.StatusDerived
	default:
		meta.Status = layers.StatusComplete
	}
	if err := e.layers.Finish(l.ID, meta); err != nil {
		return "", nil, err
	}
	if r.exit != 0 {
		return "", nil, &PhaseError{Drv: j.drv.Path, Name: j.drv.Name, Phase: ph.Name, Exit: r.exit, LogTail: tail(withoutNixLines(logBuf.String()), 25), Layer: l.ID, CacheDir: e.opts.CacheDir}
	}
	e.log.Debug("phase done", zap.String("phase", ph.Name), zap.Duration("took", meta.Duration))
	return l.ID, next, nil
}

func hasForced(p *Plan) bool {
	for _, ph := range p.Phases {
		if ph.Status == StatusForced {
			return true
		}
	}
	return false
}

func (e *Engine) saveState(id string, d *shellstate.Delta) error {
	if d == nil {
		return nil
	}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return e.layers.SetData(id, "state", data)
}

func (e *Engine) loadState(id string) (*shellstate.Delta, error) {
	data, err := e.layers.Data(id, "state")
	if err != nil {
		return nil, nil // a whole-build layer has no shell state
	}
	var d shellstate.Delta
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("shell state of layer %s is corrupt: %w (remove it with nixlayer gc)", id, err)
	}
	return &d, nil
}

// rewriteLayer adapts reused layers to the current output paths on a new
// layer over them; the shell state gets the same rewrite.
func (e *Engine) rewriteLayer(j *job, parent string, state *shellstate.Delta, old2new map[string]string, res *Result, rw rewrite.Rewriter) (string, *shellstate.Delta, error) {
	l, err := e.layers.Create(parent, layers.Meta{Kind: layers.KindRewrite, DrvPath: j.drv.Path, DrvName: j.drv.Name, Package: j.pkg, Outputs: j.drv.Outputs, Note: "rewrite"})
	if err != nil {
		return "", nil, err
	}
	root, err := e.layers.Mount(l.ID)
	if err != nil {
		return "", nil, err
	}
	v, err := rw.Rewrite(root, old2new)
	fault.Point(fault.InRewrite)
	e.layers.Unmount(l.ID)
	if err != nil {
		return "", nil, err
	}
	res.Rewrite = &v
	if !v.Exact {
		res.Verified = false
	}
	var next *shellstate.Delta
	if state != nil {
		next = rewriteState(state, old2new)
		if err := e.saveState(l.ID, next); err != nil {
			return "", nil, err
		}
	}
	f := v.Exact
	meta := layers.Meta{Kind: layers.KindRewrite, Status: layers.StatusDerived, DrvPath: j.drv.Path, DrvName: j.drv.Name, Package: j.pkg, Outputs: j.drv.Outputs, Note: "rewrite: " + v.Method, Verified: &f}
	if err := e.layers.Finish(l.ID, meta); err != nil {
		return "", nil, err
	}
	return l.ID, next, nil
}

// lastReused is the top layer of the prefix a plan reuses ("" for none).
func lastReused(p *Plan) string {
	top := ""
	for _, ph := range p.Phases {
		if ph.Status == StatusRun {
			break
		}
		top = ph.Layer.ID
	}
	return top
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

// exactPrefix finds the longest prefix of the reused chain (ending in top,
// n phases) whose path map is exact and rewrites it on a new layer. It
// returns how many phases it keeps (0: none, start from scratch), the layer
// and the shell state to continue from.
func (e *Engine) exactPrefix(ctx context.Context, j *job, plan *Plan, top string, n int, res *Result) (int, string, *shellstate.Delta, error) {
	var start *shellstate.Delta
	if j.probe != nil {
		start = j.probe.Start
	}
	chain, err := e.phaseChain(top, n)
	if err != nil {
		return 0, "", start, nil
	}
	for k := n - 1; k >= 1; k-- {
		base := chain[k-1]
		m := e.storedMap(base.ID)
		if m == nil || !m.Exact() {
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
			return 0, "", start, err
		}
		rewritten, next, err := e.rewriteLayer(j, base.ID, state, old2new, res, rewrite.Learned{Map: m})
		if err != nil {
			return 0, "", start, err
		}
		if !res.Rewrite.Exact {
			e.layers.Delete(rewritten)
			continue
		}
		return k, rewritten, next, nil
	}
	res.Rewrite = nil
	return 0, "", start, nil
}

// errEndedEarly: a phase's code exited the builder before the phase ended.
type errEndedEarly struct{ phase string }

func (e errEndedEarly) Error() string { return e.phase + " exited the builder" }

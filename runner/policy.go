package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/proc"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite/learnmap"
)

// This file is the one policy of what a build leaves to the background,
// for the CLI, the hook and the language server alike: a result that
// rests on what is not verified yet is delivered at once as provisional
// and recorded; whenever a build's chain lacks a path map (failed builds
// and partial reuses included) or a result waits to be settled, a
// detached `nixlayer learn` learns the map and settles the results
// (settle.go); it runs at idle priority and yields to a foreground build
// of its chain (yield.go). A rebuild with new output paths learns the map
// from the pair instead (pair.go). The hook waits for a learner only when
// the last learning measured says it ends before a full build would, and
// learns the map in front when the pair a full build would make could not
// teach it (fullIfFaster). A resumed result chosen for an audit (config.json audit)
// is built again from scratch there and compared (audit.go).

// resultState says where a finished build's result stands.
func (e *Engine) resultState(res *Result, o *outcome) {
	switch {
	case res.Verified && res.Rewrite != nil:
		res.State, res.Why = events.StateVerified, "resumed with an exact rewrite of the reused layers (learned path map)"
	case res.Verified:
		res.State, res.Why = events.StateVerified, "built with the real output paths"
	case res.Plan != nil && hasForced(res.Plan):
		res.State, res.Why = events.StateUnverified, res.WhyNotVerified()
	case o.provisional != nil:
		res.State, res.Why = events.StateProvisional, "the reused layers were rewritten provisionally, without waiting for their path map; the learned map verifies the result in the background (or the later phases rerun on the exact rewrite)"
	case res.Exactness != nil && !res.Exactness.Exact:
		ex := res.Exactness
		res.State, res.Why = events.StateProvisional, "outputs not exact ("+ex.Summary+"); an exact rebuild"
		if ex.RebuildFrom != "" {
			res.Why += " from " + ex.RebuildFrom
		}
		res.Why += " replaces it in the background (nixlayer verify lists every file)"
	default:
		res.State, res.Why = events.StateProvisional, "it reuses layers that rest on an inexact rewrite of an earlier build; an exact rebuild replaces it in the background"
	}
}

// recordResult keeps the result's state for `nixlayer status`, the editor
// and the background work.
func (e *Engine) recordResult(j *phaserun.Job, res *Result, bo BuildOptions, o *outcome, progress func(events.Event)) {
	r := &results.Record{
		Drv: j.Drv.Path, Name: j.Drv.Name, Package: j.Pkg, State: res.State, Why: res.Why,
		Outputs: res.Outputs, Built: time.Now(), Top: res.TopLayer,
	}
	if link := cmp.Or(bo.ResultLink, bo.RecordLink); link != "" {
		r.Links = resultLinks(link, res.Outputs)
	}
	r.ResultsDir = e.resultsDir(bo.ResultsDir)
	r.Owner = bo.ResultOwner
	if old, _ := results.Of(e.opts.CacheDir, j.Drv.Path); old != nil && old.State.Pending() && old.Top == res.TopLayer && res.State == events.StateProvisional {
		// The same provisional result again: it keeps what settles it.
		for name, l := range r.Links {
			if old.Links == nil {
				old.Links = map[string]string{}
			}
			old.Links[name] = l
		}
		old.Outputs = res.Outputs
		res.Why = old.Why
		r = old
	} else if res.State == events.StateProvisional {
		r.Cause = provisionalCause(o.provisional, res.Exactness)
		if rs := o.provisional; rs != nil {
			r.Reused, r.RewriteLayer, r.Created, r.Old2New = rs.n, rs.layer, o.created, rs.old2new
			if len(rs.chain) > 0 {
				r.ReusedTop = rs.chain[len(rs.chain)-1].ID
			}
		}
	}
	if len(res.Reused) > 0 && r.Audit == nil && res.State != events.StateUnverified {
		// A resumed result: the audit's rate decides whether a clean build
		// checks it in the background (audit.go).
		chosen, err := e.auditChosen()
		if err != nil {
			progress(events.Event{Kind: events.EventWarning, Message: "no audit: " + err.Error()})
		} else if chosen {
			r.Audit = &results.Audit{State: results.AuditDue}
		}
	}
	if err := results.Save(e.opts.CacheDir, r); err != nil {
		e.log.Warn("recording the result's state", zap.Error(err))
	}
	if res.State != events.StateVerified {
		progress(events.Event{Kind: res.State.Kind(), State: res.State, Drv: r.Drv, Message: string(res.State) + " result: " + res.Why})
	}
}

// afterBuild starts the background work the build leaves: learning its
// chain's path map when it lacks one, and settling the package's pending
// results. It runs after every build, failed ones included.
func (e *Engine) afterBuild(drvPath string, bo BuildOptions, o *outcome, res *Result, err error) {
	if bo.NoLearn || o.j == nil || o.plan == nil || o.plan.Whole {
		return
	}
	pending := len(results.Pending(e.opts.CacheDir, o.j.Pkg)) > 0
	audit := false
	if r, _ := results.Of(e.opts.CacheDir, drvPath); err == nil && r != nil {
		audit = r.Audit.Due()
	}
	if !pending && !audit && (o.pairLearned || !e.lacksMap(res, err)) {
		return
	}
	what := backgroundWhy(pending, audit)
	pid, logPath, serr := e.startBackground(o.j.Pkg, drvPath, what)
	if serr != nil {
		e.log.Debug("no background work", zap.Error(serr))
		return
	}
	if bo.Progress != nil {
		bo.Progress(events.Event{Kind: events.EventBackground, Message: fmt.Sprintf("%s in the background (pid %d, at idle priority; log %s)", what, pid, logPath)})
	}
}

// backgroundWhy says what the background work does and why.
func backgroundWhy(pending, audit bool) string {
	switch {
	case pending:
		return "verifying the provisional result (learning the output-path map first)"
	case audit:
		return "auditing the resumed result (a clean build from scratch compared with it)"
	}
	return "learning the output-path map (the chain has none; the next edit resumes with it)"
}

// lacksMap reports whether the verified chain a build leaves has no path
// map: the layers of a successful build, or those before the phase that
// failed.
func (e *Engine) lacksMap(res *Result, err error) bool {
	top := ""
	switch {
	case err == nil && res != nil && res.State == events.StateVerified:
		top = res.TopLayer
	case err != nil:
		var pe *PhaseError
		if !errors.As(err, &pe) || pe.Layer == "" {
			return false
		}
		l, gerr := e.layers.Get(pe.Layer)
		if gerr != nil {
			return false
		}
		top = l.Parent
	}
	l := e.topPhase(top)
	return l != nil && l.Meta.IsVerified() && e.learner.StoredMap(l.ID) == nil
}

// topPhase is the newest phase layer at or under id (nil for none).
func (e *Engine) topPhase(id string) *layers.Layer {
	l, _ := layers.NearestPhase(e.layers, id)
	return l
}

// startBackground runs `nixlayer learn` for drvPath in a detached process
// (its output in <cache>/learn.log) that outlives the caller: it learns
// the chain's path map and settles the package's pending results. It is
// announced at once (BackgroundJobs), before the process starts its work.
// The running binary must be nixlayer.
func (e *Engine) startBackground(pkg, drvPath, why string) (pid int, logPath string, err error) {
	if os.Getenv("NIXLAYER_BACKGROUND_LEARN") == "0" {
		return 0, "", fmt.Errorf("background learning is off (NIXLAYER_BACKGROUND_LEARN=0)")
	}
	self := e.opts.Executable
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return 0, "", err
		}
		if strings.HasSuffix(self, ".test") {
			return 0, "", fmt.Errorf("%s is a test binary, not nixlayer: set Options.Executable", self)
		}
	}
	logPath = filepath.Join(e.opts.CacheDir, "learn.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, "", err
	}
	defer logf.Close()
	cmd := exec.Command(self, "learn", "--cache", e.opts.CacheDir, drvPath)
	// Detached, with no fd of ours: Nix waits for the hook's pipes to close.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	pid = cmd.Process.Pid
	go cmd.Wait() // reaped when it ends before we do (the language server lives long)
	// Never competing with what a user waits for (the learner's sandboxed
	// phases inherit it).
	if err := proc.IdlePriority(pid); err != nil {
		e.log.Warn("background work at idle priority", zap.Error(err))
	}
	results.AnnounceBackground(e.opts.CacheDir, pkg, drvPath, pid, why+"; at idle priority, it yields to a build of the same chain")
	return pid, logPath, nil
}

// fullIfFaster, for the hook (exact, never slower than Nix): when the
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
func (e *Engine) fullIfFaster(ctx context.Context, j *phaserun.Job, plan *planner.Plan, progress func(events.Event)) *planner.Plan {
	top := lastReused(plan)
	if top == "" || e.learner.StoredMap(top) != nil || e.opts.Rewriter != nil {
		return plan
	}
	if e.learner.MapFromPair(ctx, plan, j.Pkg, top, false, progress) != nil {
		return plan // the resume finds the map
	}
	_, took := planner.PreviousChain(e.layers, j.Pkg)
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
	learner := results.Learner(e.opts.CacheDir, j.Pkg)
	if learner != nil && learner.Learning.Covers(top) && learner.Learning.Estimate > 0 {
		learnLeft = max(0, time.Until(learner.Learning.Started.Add(learner.Learning.Estimate)))
	}
	cannotTeach := e.rebuildCannotTeach(top, j.Drv.Outputs)
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
// path map (fullIfFaster).
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
func (e *Engine) rebuildCannotTeach(top string, outputs map[string]string) error {
	l, err := e.layers.Get(top)
	if err != nil {
		return err
	}
	if e.learner.TwinsWith(l.Meta.Key, "", outputs) != nil {
		return nil
	}
	if err := learnmap.Pairable(l.Meta.Outputs, outputs); err != nil {
		return err
	}
	return fmt.Errorf("no verified build of %s to pair with", l.Meta.Phase)
}

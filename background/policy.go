// Package background is the work a build leaves behind it, one policy for
// the CLI, the hook and the language server: a detached `nixlayer learn`
// (started by AfterBuild, at idle priority, yielding to a foreground build
// of its chain) learns a chain's path map, settles the package's
// provisional results against it (settle.go: confirmed, or replaced by an
// exact rebuild), and audits the resumed results chosen for it (audit.go:
// a clean build compared file by file; a stale layer retired). It builds
// and delivers through build.Builder; runner's Engine wires it.
package background

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/proc"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/results"
)

// Worker does a cache's background work. It works on the cache's parts
// as its Builder does (the layer store, locks, runner, planner, learner,
// layer caches), and builds and delivers through it.
type Worker struct {
	*build.Builder
	// Executable is the nixlayer binary the detached work runs; the
	// running one by default.
	Executable string
}

// This file is the one policy of what a build leaves to the background,
// for the CLI, the hook and the language server alike: a result that
// rests on what is not verified yet is delivered at once as provisional
// and recorded; whenever a build's chain lacks a path map (failed builds
// and partial reuses included) or a result waits to be settled, a
// detached `nixlayer learn` learns the map and settles the results
// (settle.go); it runs at idle priority and yields to a foreground build
// of its chain (yield.go). A rebuild with new output paths learns the map
// from the pair instead (learn/pair.go). The hook waits for a learner only when
// the last learning measured says it ends before a full build would, and
// learns the map in front when the pair a full build would make could not
// teach it (learn.Learner.FullIfFaster). A resumed result chosen for an audit (config.json audit)
// is built again from scratch there and compared (audit.go).

// AfterBuild starts the background work the build leaves: learning its
// chain's path map when it lacks one, and settling the package's pending
// results. It runs after every build, failed ones included.
func (w *Worker) AfterBuild(drvPath string, bo build.BuildOptions, o *build.Outcome, res *build.Result, err error) {
	if bo.NoLearn || o.Job == nil || o.Plan == nil || o.Plan.Whole {
		return
	}
	pending := len(results.Pending(w.CacheDir, o.Job.Pkg)) > 0
	audit := false
	if r, _ := results.Of(w.CacheDir, drvPath); err == nil && r != nil {
		audit = r.Audit.Due()
	}
	if !pending && !audit && (o.PairLearned || !w.lacksMap(res, err)) {
		return
	}
	what := backgroundWhy(pending, audit)
	pid, logPath, serr := w.startBackground(o.Job.Pkg, drvPath, what)
	if serr != nil {
		w.Log.Debug("no background work", zap.Error(serr))
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
func (w *Worker) lacksMap(res *build.Result, err error) bool {
	top := ""
	switch {
	case err == nil && res != nil && res.State == events.StateVerified:
		top = res.TopLayer
	case err != nil:
		var pe *build.PhaseError
		if !errors.As(err, &pe) || pe.Layer == "" {
			return false
		}
		l, gerr := w.Layers.Get(pe.Layer)
		if gerr != nil {
			return false
		}
		top = l.Parent
	}
	l := w.topPhase(top)
	return l != nil && l.Meta.IsVerified() && w.Learner.StoredMap(l.ID) == nil
}

// topPhase is the newest phase layer at or under id (nil for none).
func (w *Worker) topPhase(id string) *layers.Layer {
	l, _ := layers.NearestPhase(w.Layers, id)
	return l
}

// startBackground runs `nixlayer learn` for drvPath in a detached process
// (its output in <cache>/learn.log) that outlives the caller: it learns
// the chain's path map and settles the package's pending results. It is
// announced at once (BackgroundJobs), before the process starts its work.
// The running binary must be nixlayer.
func (w *Worker) startBackground(pkg, drvPath, why string) (pid int, logPath string, err error) {
	if os.Getenv("NIXLAYER_BACKGROUND_LEARN") == "0" {
		return 0, "", fmt.Errorf("background learning is off (NIXLAYER_BACKGROUND_LEARN=0)")
	}
	self := w.Executable
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return 0, "", err
		}
		if strings.HasSuffix(self, ".test") {
			return 0, "", fmt.Errorf("%s is a test binary, not nixlayer: set Options.Executable", self)
		}
	}
	logPath = filepath.Join(w.CacheDir, "learn.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, "", err
	}
	defer logf.Close()
	cmd := exec.Command(self, "learn", "--cache", w.CacheDir, drvPath)
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
		w.Log.Warn("background work at idle priority", zap.Error(err))
	}
	results.AnnounceBackground(w.CacheDir, pkg, drvPath, pid, why+"; at idle priority, it yields to a build of the same chain")
	return pid, logPath, nil
}

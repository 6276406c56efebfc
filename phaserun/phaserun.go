// Package phaserun runs a derivation's phases the way nixlayer builds them:
// it prepares a derivation (read only when Nix would build it, inputs
// realised, the closure and Nix's sandbox paths and environment, the
// stdenv's probe: its phases, functions and hook arrays), runs one
// sandboxed step (the driver, driver.bash, sources the stdenv, replays the
// shell state and runs a phase; or a whole build, a probe, a shell), and
// runs one phase on a layer (Nix's build-directory files first, then the
// step, then the shell state after it). The engine builds, learns,
// audits and opens shells with it; nothing here decides what to build.
package phaserun

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/shellstate"
)

// Runner runs phases against one cache.
type Runner struct {
	Layers   *layers.Store
	CacheDir string // probes, and the scratch /etc of each step
	// Cores is NIX_BUILD_CORES.
	Cores int
	Log   *zap.Logger
	// Derivations recomputes the store paths a .drv claims.
	Derivations *drv.Checker
}

// PhaseRun is what running one phase on a layer gave.
type PhaseRun struct {
	*StepResult
	// Next is the shell state after the phase (the state before it for a
	// whole build); nil with StateErr when the phase's dumps were unusable.
	Next     *shellstate.Delta
	StateErr error
}

// RunPhaseOn runs phase i of plan for j on layer id, created for it over
// the layer with the state before it: the one way a phase executes, for
// the engine's builds and for the twins, reruns and audits on its scratch
// layers. The files Nix writes into the build directory (passAsFile,
// .attrs.json/.attrs.sh) are written first: they are j's, also over layers
// an earlier derivation built (they hold the edited attributes), and left
// alone when they hold that already. scratch marks a step of background
// work (tests may hold it).
func (pr *Runner) RunPhaseOn(ctx context.Context, j *Job, plan *planner.Plan, i int, id string, state *shellstate.Delta, log io.Writer, scratch bool) (*PhaseRun, error) {
	ph := plan.Phases[i]
	root, err := pr.Layers.Mount(id)
	if err != nil {
		return nil, err
	}
	defer pr.Layers.Unmount(id)
	if err := writeAttrsFiles(j, root); err != nil {
		return nil, err
	}
	etc, err := os.MkdirTemp(pr.CacheDir, "etc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(etc)
	s := Step{Root: root, Etc: etc, Mode: "phase", Phase: ph.Name, Last: i == len(plan.Phases)-1, Log: log, Scratch: scratch}
	if plan.Whole {
		s.Mode = "whole"
	} else if state != nil {
		s.Restore = state.Script()
	}
	r, err := pr.RunStep(ctx, j, s)
	if err != nil {
		return nil, err
	}
	run := &PhaseRun{StepResult: r, Next: state}
	if !plan.Whole {
		caps, perr := shellstate.ParseDumps(r.Dumps)
		switch {
		case perr != nil:
			run.Next, run.StateErr = nil, perr
		case len(caps) < 2:
			run.Next, run.StateErr = nil, fmt.Errorf("%d shell state captures, want 2", len(caps))
		default:
			run.Next = shellstate.Diff(caps[0], caps[1])
		}
	}
	return run, nil
}

package runner

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/shellstate"
)

// phaseRun is what running one phase on a layer gave.
type phaseRun struct {
	*stepResult
	// next is the shell state after the phase (the state before it for a
	// whole build); nil with stateErr when the phase's dumps were unusable.
	next     *shellstate.Delta
	stateErr error
}

// runPhaseOn runs phase i of plan for j on layer id, created for it over
// the layer with the state before it: the one way a phase executes, for
// builds (runPhase) and for the twins, reruns and audits on scratch layers
// (scratch.run). The files Nix writes into the build directory (passAsFile,
// .attrs.json/.attrs.sh) are written first: they are j's, also over layers
// an earlier derivation built (they hold the edited attributes), and left
// alone when they hold that already. scratch marks a step of background
// work (tests may hold it).
func (e *Engine) runPhaseOn(ctx context.Context, j *job, plan *planner.Plan, i int, id string, state *shellstate.Delta, log io.Writer, scratch bool) (*phaseRun, error) {
	ph := plan.Phases[i]
	root, err := e.layers.Mount(id)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(id)
	if err := writeAttrsFiles(j, root); err != nil {
		return nil, err
	}
	etc, err := os.MkdirTemp(e.opts.CacheDir, "etc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(etc)
	s := step{root: root, etc: etc, mode: "phase", phase: ph.Name, last: i == len(plan.Phases)-1, log: log, scratch: scratch}
	if plan.Whole {
		s.mode = "whole"
	} else if state != nil {
		s.restore = state.Script()
	}
	r, err := e.runStep(ctx, j, s)
	if err != nil {
		return nil, err
	}
	run := &phaseRun{stepResult: r, next: state}
	if !plan.Whole {
		caps, perr := shellstate.ParseDumps(r.dumps)
		switch {
		case perr != nil:
			run.next, run.stateErr = nil, perr
		case len(caps) < 2:
			run.next, run.stateErr = nil, fmt.Errorf("%d shell state captures, want 2", len(caps))
		default:
			run.next = shellstate.Diff(caps[0], caps[1])
		}
	}
	return run, nil
}

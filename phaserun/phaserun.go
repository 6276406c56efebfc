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
	"encoding/json"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
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

func (pr *Runner) LoadState(id string) (*shellstate.Delta, error) {
	data, err := pr.Layers.Data(id, layers.DataState)
	if err != nil {
		return nil, nil // a whole-build layer has no shell state
	}
	var d shellstate.Delta
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("shell state of layer %s is corrupt: %w (remove it with nixlayer gc)", id, err)
	}
	return &d, nil
}

func (pr *Runner) SaveState(id string, d *shellstate.Delta) error {
	if d == nil {
		return nil
	}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return pr.Layers.SetData(id, layers.DataState, data)
}

// RewriteLayer adapts reused layers to the current output paths on a new
// layer over them (the rewrite a resume, and a learner's exact prefix,
// continue from); the shell state gets the same rewrite. It returns the
// layer, the state and the rewrite's verdict.
func (pr *Runner) RewriteLayer(j *Job, parent string, state *shellstate.Delta, old2new map[string]string, rw rewrite.Rewriter) (string, *shellstate.Delta, *rewrite.Verdict, error) {
	l, err := pr.Layers.Create(parent, layers.Meta{Kind: layers.KindRewrite, DrvPath: j.Drv.Path, DrvName: j.Drv.Name, Package: j.Pkg, Outputs: j.Drv.Outputs, Note: "rewrite"})
	if err != nil {
		return "", nil, nil, err
	}
	root, err := pr.Layers.Mount(l.ID)
	if err != nil {
		return "", nil, nil, err
	}
	v, err := rw.Rewrite(root, old2new)
	fault.Point(fault.InRewrite)
	pr.Layers.Unmount(l.ID)
	if err != nil {
		return "", nil, nil, err
	}
	var next *shellstate.Delta
	if state != nil {
		next = RewriteState(state, old2new)
		if err := pr.SaveState(l.ID, next); err != nil {
			return "", nil, nil, err
		}
	}
	f := v.Exact
	meta := layers.Meta{Kind: layers.KindRewrite, Status: layers.StatusDerived, DrvPath: j.Drv.Path, DrvName: j.Drv.Name, Package: j.Pkg, Outputs: j.Drv.Outputs, Note: "rewrite: " + v.Method, Verified: &f}
	if err := pr.Layers.Finish(l.ID, meta); err != nil {
		return "", nil, nil, err
	}
	return l.ID, next, &v, nil
}

// RewriteState gives a shell state the same output-path substitution the
// tree gets (shell text holds whole paths, never compiler fragments).
func RewriteState(d *shellstate.Delta, old2new map[string]string) *shellstate.Delta {
	data, _ := json.Marshal(d)
	var out shellstate.Delta
	if json.Unmarshal([]byte(rewrite.Text(string(data), old2new)), &out) != nil {
		return d
	}
	return &out
}

package phaserun

import (
	"context"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/shellstate"
)

// Scratch runs phases on layers that never count as a build (no phase
// name, no key): the twins a learner compares with a chain, the reruns
// that tell nondeterminism apart, the clean build of an audit. Close
// removes them.
type Scratch struct {
	pr   *Runner
	plan *planner.Plan
	// Created are the scratch layers, oldest first (others may be added:
	// Close removes them too).
	Created []string
}

// NewScratch runs phases of plan on scratch layers.
func (pr *Runner) NewScratch(plan *planner.Plan) *Scratch {
	return &Scratch{pr: pr, plan: plan}
}

// Close removes the scratch layers.
func (sc *Scratch) Close() {
	if os.Getenv("NIXLAYER_KEEP_SCRATCH") != "" { // debugging the path map
		return
	}
	for i := len(sc.Created) - 1; i >= 0; i-- {
		sc.pr.Layers.Unmount(sc.Created[i])
		if err := sc.pr.Layers.Delete(sc.Created[i]); err != nil {
			sc.pr.Log.Warn("removing a scratch layer", zap.Error(err))
		}
	}
}

// Run runs phase i of the plan for sj on a scratch layer over parent
// ("" for the first phase) with the shell state before it (RunPhaseOn),
// and returns the layer and the state after it; note says what for.
func (sc *Scratch) Run(ctx context.Context, sj *Job, i int, parent string, state *shellstate.Delta, note string) (string, *shellstate.Delta, error) {
	pr, plan := sc.pr, sc.plan
	phase := plan.Phases[i].Name
	l, err := pr.Layers.Create(parent, layers.Meta{Kind: layers.KindLearnScratch, DrvPath: sj.Drv.Path, DrvName: sj.Drv.Name, Outputs: sj.Drv.Outputs, Note: note + " " + phase})
	if err != nil {
		return "", nil, err
	}
	sc.Created = append(sc.Created, l.ID)
	var logTail tailWriter
	r, err := pr.RunPhaseOn(ctx, sj, plan, i, l.ID, state, &logTail, true)
	if err != nil {
		return "", nil, err
	}
	if r.Exit != 0 {
		return "", nil, fmt.Errorf("%s failed (exit %d) when run again (%s):\n%s", phase, r.Exit, note, logTail.String())
	}
	if r.StateErr != nil {
		return "", nil, fmt.Errorf("%s: shell state lost when run again (%s): %v", phase, note, r.StateErr)
	}
	next := r.Next
	return l.ID, next, nil
}

// tailWriter keeps the last lines written, for error messages.
type tailWriter struct{ buf []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = t.buf[len(t.buf)-8192:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return logtail.Lines(string(t.buf), 15) }

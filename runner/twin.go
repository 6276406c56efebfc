package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
)

// LearnConcurrent is the config.json "learn" value that runs the synthetic
// twin of a cold build beside it, so the path map exists when the build
// ends: it costs the cores of a second build at the same time.
const LearnConcurrent = "concurrent"

// learnsConcurrently: config.json says "learn": "concurrent".
func (e *Engine) learnsConcurrently() bool {
	cfg, err := e.config()
	return err == nil && cfg.Learn == LearnConcurrent
}

// twin runs the synthetic twin of a cold build: the same phases with a
// synthetic output path, each compared with the real phase's layer as soon
// as both are done (learnChain does the same after the build).
type twin struct {
	ready  chan *layers.Layer // the real phase layers, in order; closed when the build ends
	done   chan error
	cancel context.CancelFunc
	t0     time.Time
}

var errTwinStopped = errors.New("the build ended before its twin")

// startTwin starts the twin of a build that runs every phase of plan.
func (e *Engine) startTwin(ctx context.Context, j *phaserun.Job, plan *planner.Plan) *twin {
	ctx, cancel := context.WithCancel(ctx)
	t := &twin{ready: make(chan *layers.Layer, len(plan.Phases)), done: make(chan error, 1), cancel: cancel, t0: time.Now()}
	go func() { t.done <- e.runTwin(ctx, j, plan, t.ready) }()
	return t
}

// phaseDone hands the twin a finished real phase layer.
func (t *twin) phaseDone(e *Engine, id string) {
	if l, err := e.layers.Get(id); err == nil {
		t.ready <- l
	}
}

// wait ends the twin (after the build ended) and reports what it learned.
func (t *twin) wait(progress func(events.Event)) {
	close(t.ready)
	err := <-t.done
	t.cancel()
	switch {
	case err == nil:
		progress(events.Event{Kind: events.EventLearned, Elapsed: time.Since(t.t0), Message: fmt.Sprintf("path maps learned beside the build (learn: concurrent), %s", events.Duration(time.Since(t.t0)))})
	case errors.Is(err, errTwinStopped):
	default:
		progress(events.Event{Kind: events.EventLearned, Message: "path maps not learned beside the build: " + firstLine(err.Error())})
	}
}

func (e *Engine) runTwin(ctx context.Context, j *phaserun.Job, plan *planner.Plan, ready <-chan *layers.Layer) error {
	defer func() {
		for range ready { // let the build hand over its layers
		}
	}()
	pathsB, toB := map[string]string{}, map[string]string{}
	for name, p := range j.Drv.Outputs {
		pathsB[name] = rewrite.SyntheticPath(p)
		toB[p] = pathsB[name]
	}
	sc := e.run.NewScratch(plan)
	defer sc.Close()
	sj := scratchJob(j, pathsB, toB)
	state := j.Probe.Start
	if state != nil {
		state = phaserun.RewriteState(state, toB)
	}
	var chain []*layers.Layer
	var treesB []string
	jobs := make([]*phaserun.Job, 0, len(plan.Phases))
	parent := ""
	for i := range plan.Phases {
		id, next, err := sc.Run(ctx, sj, i, parent, state, "learn")
		if err != nil {
			return err
		}
		parent, state = id, next
		l, ok := <-ready
		if !ok {
			return errTwinStopped
		}
		root, err := e.layers.Mount(id)
		if err != nil {
			return err
		}
		_, err = e.learnLayer(l, root, pathsB)
		e.layers.Unmount(id)
		if err != nil {
			return err
		}
		chain, treesB, jobs = append(chain, l), append(treesB, id), append(jobs, j)
	}
	return e.judgeLearned(ctx, jobs, plan, chain, treesB, sc, true, func(events.Event) {})
}

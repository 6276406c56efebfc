package learn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite/learnmap"
)

// Twin runs the synthetic twin of a cold build: the same phases with a
// synthetic output path, each compared with the real phase's layer as soon
// as both are done (LearnChain does the same after the build).
type Twin struct {
	lr     *Learner
	ready  chan *layers.Layer // the real phase layers, in order; closed when the build ends
	done   chan error
	cancel context.CancelFunc
	t0     time.Time
}

var errTwinStopped = errors.New("the build ended before its twin")

// StartTwin starts the twin of a build that runs every phase of plan.
func (lr *Learner) StartTwin(ctx context.Context, j *phaserun.Job, plan *planner.Plan) *Twin {
	ctx, cancel := context.WithCancel(ctx)
	t := &Twin{lr: lr, ready: make(chan *layers.Layer, len(plan.Phases)), done: make(chan error, 1), cancel: cancel, t0: time.Now()}
	go func() { t.done <- lr.runTwin(ctx, j, plan, t.ready) }()
	return t
}

// PhaseDone hands the twin a finished real phase layer.
func (t *Twin) PhaseDone(id string) {
	if l, err := t.lr.Layers.Get(id); err == nil {
		t.ready <- l
	}
}

// Wait ends the twin (after the build ended) and reports what it learned.
func (t *Twin) Wait(progress func(events.Event)) {
	close(t.ready)
	err := <-t.done
	t.cancel()
	switch {
	case err == nil:
		progress(events.Event{Kind: events.EventLearned, Elapsed: time.Since(t.t0), Message: fmt.Sprintf("path maps learned beside the build (learn: concurrent), %s", events.Duration(time.Since(t.t0)))})
	case errors.Is(err, errTwinStopped):
	default:
		progress(events.Event{Kind: events.EventLearned, Message: "path maps not learned beside the build: " + logtail.FirstLine(err.Error())})
	}
}

func (lr *Learner) runTwin(ctx context.Context, j *phaserun.Job, plan *planner.Plan, ready <-chan *layers.Layer) error {
	defer func() {
		for range ready { // let the build hand over its layers
		}
	}()
	pathsB, toB := map[string]string{}, map[string]string{}
	for name, p := range j.Drv.Outputs {
		pathsB[name] = learnmap.SyntheticPath(p)
		toB[p] = pathsB[name]
	}
	sc := lr.Run.NewScratch(plan)
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
		root, err := lr.Layers.Mount(id)
		if err != nil {
			return err
		}
		_, err = lr.learnLayer(l, root, pathsB)
		lr.Layers.Unmount(id)
		if err != nil {
			return err
		}
		chain, treesB, jobs = append(chain, l), append(treesB, id), append(jobs, j)
	}
	return lr.judgeLearned(ctx, jobs, plan, chain, treesB, sc, true, func(events.Event) {})
}

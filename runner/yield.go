package runner

import (
	"context"
	"fmt"
	"os"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
)

// Background work never competes with what a user waits for: the
// detached learner runs at idle priority (CPU and I/O), pauses while
// foreground builds run on the cache, and a learner whose chain a
// foreground build is about to build stops at once and leaves it to that
// build, which learns the map from the pair of builds (pair.go;
// foreground.go).

// yieldable is ctx for the background work on pkg (nixlayer learn): it
// pauses for foreground builds of the cache and ends with foreground.ErrYielded when
// one reruns the chain it learns (foreground.go).
func (e *Engine) yieldable(ctx context.Context, pkg string) (context.Context, func()) {
	return foreground.Background(ctx, e.opts.CacheDir, func() []string {
		if l := results.MyLearning(e.opts.CacheDir, pkg); l != nil {
			return l.Keys
		}
		return nil
	})
}

// yieldLearner tells the user that the learner at work on pkg's chain
// stops because this build is about to rebuild phases of that chain (the
// same keys): it would only take cores from this build, which learns the
// map from the pair or in front. The learner sees it in this build's mark.
func (e *Engine) yieldLearner(pkg string, plan *planner.Plan, progress func(events.Event)) {
	learner := results.Learner(e.opts.CacheDir, pkg)
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

package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/layers"
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
		if w := results.Learner(e.opts.CacheDir, pkg); w != nil && w.PID == os.Getpid() {
			return w.Learning.Keys
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

// learnTiming is the last learning measured on this cache: how long the
// chain's phases took to build and how long learning them took.
type learnTiming struct {
	Built time.Duration `json:"built"`
	Took  time.Duration `json:"took"`
}

func (e *Engine) learnTimingPath() string {
	return filepath.Join(e.opts.CacheDir, "learn-timing.json")
}

// recordLearning keeps how long learning chain took, for the estimate of
// the next learner (learningEstimate).
func (e *Engine) recordLearning(chain []*layers.Layer, took time.Duration) {
	t := learnTiming{Built: chainBuildTime(chain), Took: took}
	data, _ := json.Marshal(t)
	_ = os.WriteFile(e.learnTimingPath(), data, 0o600)
}

// learningEstimate is how long learning chain should take, scaled from the
// last learning measured (0 when none was): never the phases' build time,
// which learning (a twin build and a tree comparison per phase) exceeds.
func (e *Engine) learningEstimate(chain []*layers.Layer) time.Duration {
	data, err := os.ReadFile(e.learnTimingPath())
	var t learnTiming
	if err != nil || json.Unmarshal(data, &t) != nil || t.Built <= 0 || t.Took <= 0 {
		return 0
	}
	return time.Duration(float64(t.Took) * float64(chainBuildTime(chain)) / float64(t.Built))
}

func chainBuildTime(chain []*layers.Layer) time.Duration {
	var d time.Duration
	for _, l := range chain {
		d += l.Meta.Duration
	}
	return d
}

package background

import (
	"context"

	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/results"
)

// Background work never competes with what a user waits for: the
// detached learner runs at idle priority (CPU and I/O), pauses while
// foreground builds run on the cache, and a learner whose chain a
// foreground build is about to build stops at once and leaves it to that
// build, which learns the map from the pair of builds (learn/pair.go;
// package foreground).

// yieldable is ctx for the background work on pkg (nixlayer learn): it
// pauses for foreground builds of the cache and ends with foreground.ErrYielded when
// one reruns the chain it learns (package foreground).
func (w *Worker) yieldable(ctx context.Context, pkg string) (context.Context, func()) {
	return foreground.Background(ctx, w.CacheDir, func() []string {
		if l := results.MyLearning(w.CacheDir, pkg); l != nil {
			return l.Keys
		}
		return nil
	})
}

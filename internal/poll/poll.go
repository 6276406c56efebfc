// Package poll runs a check at a steady interval, for what no event
// announces: a build log gone silent, result states another process
// changes, a phase still running.
package poll

import (
	"context"
	"time"
)

// Every calls check every interval until check says to stop or ctx ends.
func Every(ctx context.Context, interval time.Duration, check func() (stop bool)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if check() {
				return
			}
		}
	}
}

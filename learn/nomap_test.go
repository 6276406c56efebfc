package learn

import (
	"testing"
	"time"
)

// The hook without a path map: never slower than a full build by what was
// measured, and never leaving the next edit without a map when a full
// build's pair could not teach it.
func TestChooseWithoutMap(t *testing.T) {
	const s = time.Second
	for _, c := range []struct {
		name                     string
		reused, later, learnLeft time.Duration
		pairTeaches              bool
		want                     noMapChoice
	}{
		{"no learner, the pair teaches", 40 * s, 2 * s, -1, true, rebuildInFull},
		{"no learner, the pair cannot teach", 40 * s, 2 * s, -1, false, learnInFront},
		{"the learner ends sooner than the reused phases take", 40 * s, 2 * s, 10 * s, true, waitForLearner},
		{"the learner ends sooner, the pair cannot teach", 40 * s, 2 * s, 10 * s, false, waitForLearner},
		{"the learner ends later, the pair teaches", 40 * s, 2 * s, 60 * s, true, rebuildInFull},
		{"the learner ends later, the pair cannot teach", 40 * s, 2 * s, 60 * s, false, learnInFront},
		{"the learner's map is due now", 40 * s, 2 * s, 0, false, waitForLearner},
		{"as long as the reused phases: no gain in waiting", 40 * s, 2 * s, 40 * s, true, rebuildInFull},
	} {
		if got := chooseWithoutMap(c.reused, c.later, c.learnLeft, c.pairTeaches); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

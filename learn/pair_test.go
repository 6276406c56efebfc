package learn

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/layers"
)

// out is an output path whose 32-character hash is hash repeated or cut.
func out(hash string) map[string]string {
	h := strings.Repeat(hash, 32)[:32]
	return map[string]string{"out": "/nix/store/" + h + "-hello-1"}
}

// Which older builds of a phase can teach its map: one whose hashes
// differ from the new paths at every index, else two whose agreements with
// them never fall on one index; only complete, verified phase layers of
// the key, with other paths, never the layer itself.
func TestTwinsAmong(t *testing.T) {
	verified, unverified := true, false
	mk := func(id, key string, outputs map[string]string, status layers.Status, v *bool) *layers.Layer {
		return &layers.Layer{ID: id, Meta: layers.Meta{Kind: layers.KindPhase, Key: key, Outputs: outputs, Status: status, Verified: v}}
	}
	mine := out("a") // the new build's paths
	agree0 := out("a" + strings.Repeat("b", 31))
	agree31 := out(strings.Repeat("c", 31) + "a")
	cases := []struct {
		name string
		all  []*layers.Layer
		want []string
	}{
		{"nothing else of the key", []*layers.Layer{mk("x", "other", out("b"), layers.StatusComplete, nil)}, nil},
		{"a pair differing everywhere", []*layers.Layer{mk("x", "k", out("b"), layers.StatusComplete, nil)}, []string{"x"}},
		{"the newest that pairs", []*layers.Layer{mk("old", "k", out("b"), layers.StatusComplete, nil), mk("new", "k", out("c"), layers.StatusComplete, &verified)}, []string{"new"}},
		{"the same paths teach nothing", []*layers.Layer{mk("x", "k", mine, layers.StatusComplete, nil)}, nil},
		{"not complete", []*layers.Layer{mk("x", "k", out("b"), layers.StatusFailed, nil)}, nil},
		{"not verified", []*layers.Layer{mk("x", "k", out("b"), layers.StatusComplete, &unverified)}, nil},
		{"the layer itself", []*layers.Layer{mk("self", "k", out("b"), layers.StatusComplete, nil)}, nil},
		{"agreeing at an index, alone", []*layers.Layer{mk("x", "k", agree0, layers.StatusComplete, nil)}, nil},
		{"two agreeing at other indexes corroborate", []*layers.Layer{mk("x", "k", agree0, layers.StatusComplete, nil), mk("y", "k", agree31, layers.StatusComplete, nil)}, []string{"y", "x"}},
		{"two agreeing at the same index do not", []*layers.Layer{mk("x", "k", agree0, layers.StatusComplete, nil), mk("y", "k", out("a"+strings.Repeat("d", 31)), layers.StatusComplete, nil)}, nil},
	}
	for _, c := range cases {
		var got []string
		for _, l := range twinsAmong(c.all, "k", "self", mine) {
			got = append(got, l.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: twins %v, want %v", c.name, got, c.want)
		}
	}
	if twinsAmong([]*layers.Layer{mk("x", "", out("b"), layers.StatusComplete, nil)}, "", "self", mine) != nil {
		t.Error("a layer without a key has twins")
	}
}

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

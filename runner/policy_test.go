package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
)

// Where a finished build's result stands, by what it rests on.
func TestResultState(t *testing.T) {
	forced := &planner.Plan{Phases: []planner.PhasePlan{{Name: "unpackPhase", Status: planner.StatusForced}, {Name: "buildPhase", Status: planner.StatusRun}}}
	inexact := &verdict.Exactness{Exact: false, Summary: "build-id: 1 file(s)", RebuildFrom: "buildPhase"}
	for _, c := range []struct {
		name  string
		res   Result
		o     outcome
		state events.ResultState
		why   string // a part of it
	}{
		{"built with the real paths", Result{Verified: true}, outcome{}, events.StateVerified, "built with the real output paths"},
		{"resumed exactly", Result{Verified: true, Rewrite: &rewrite.Verdict{Exact: true}}, outcome{}, events.StateVerified, "exact rewrite"},
		{"forced reuse", Result{Plan: forced}, outcome{}, events.StateUnverified, "--from"},
		{"rewritten before its map", Result{Plan: &planner.Plan{}}, outcome{provisional: &resume{}}, events.StateProvisional, "provisionally"},
		{"outputs not exact", Result{Plan: &planner.Plan{}, Exactness: inexact}, outcome{}, events.StateProvisional, "from buildPhase replaces it"},
		{"on unverified layers", Result{Plan: &planner.Plan{}}, outcome{}, events.StateProvisional, "inexact rewrite of an earlier build"},
	} {
		res := c.res
		(&Engine{}).resultState(&res, &c.o)
		if res.State != c.state || !strings.Contains(res.Why, c.why) {
			t.Errorf("%s: %s (%s), want %s with %q", c.name, res.State, res.Why, c.state, c.why)
		}
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

package build

import (
	"strings"
	"testing"

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
		o     Outcome
		state events.ResultState
		why   string // a part of it
	}{
		{"built with the real paths", Result{Verified: true}, Outcome{}, events.StateVerified, "built with the real output paths"},
		{"resumed exactly", Result{Verified: true, Rewrite: &rewrite.Verdict{Exact: true}}, Outcome{}, events.StateVerified, "exact rewrite"},
		{"forced reuse", Result{Plan: forced}, Outcome{}, events.StateUnverified, "--from"},
		{"rewritten before its map", Result{Plan: &planner.Plan{}}, Outcome{provisional: &resume{}}, events.StateProvisional, "provisionally"},
		{"outputs not exact", Result{Plan: &planner.Plan{}, Exactness: inexact}, Outcome{}, events.StateProvisional, "from buildPhase replaces it"},
		{"on unverified layers", Result{Plan: &planner.Plan{}}, Outcome{}, events.StateProvisional, "inexact rewrite of an earlier build"},
	} {
		res := c.res
		resultState(&res, &c.o)
		if res.State != c.state || !strings.Contains(res.Why, c.why) {
			t.Errorf("%s: %s (%s), want %s with %q", c.name, res.State, res.Why, c.state, c.why)
		}
	}
}

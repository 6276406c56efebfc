package runner

import (
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
)

// Where a finished build's result stands, by what it rests on.
func TestResultState(t *testing.T) {
	forced := &Plan{Phases: []PhasePlan{{Name: "unpackPhase", Status: StatusForced}, {Name: "buildPhase", Status: StatusRun}}}
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
		{"rewritten before its map", Result{Plan: &Plan{}}, outcome{provisional: &resume{}}, events.StateProvisional, "provisionally"},
		{"outputs not exact", Result{Plan: &Plan{}, Exactness: inexact}, outcome{}, events.StateProvisional, "from buildPhase replaces it"},
		{"on unverified layers", Result{Plan: &Plan{}}, outcome{}, events.StateProvisional, "inexact rewrite of an earlier build"},
	} {
		res := c.res
		(&Engine{}).resultState(&res, &c.o)
		if res.State != c.state || !strings.Contains(res.Why, c.why) {
			t.Errorf("%s: %s (%s), want %s with %q", c.name, res.State, res.Why, c.state, c.why)
		}
	}
}

package verdict

import (
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/rewrite"
)

var phases = []string{"unpackPhase", "configurePhase", "buildPhase", "installPhase"}

func TestDecide(t *testing.T) {
	unreachable := Finding{File: "build/config.log", Rule: RuleUnreachable, Index: 1}
	section := Finding{File: "build/a.o", Rule: rewrite.RuleSection, Output: "debug/x.debug", Index: 2}
	buildID := Finding{File: "build/prog", Rule: rewrite.RuleBuildID, Output: "out/bin/prog", Index: 2}
	copied := Finding{File: "build/data", Rule: rewrite.RuleInstalled, Output: "out/share/data", Copy: true, Index: 1}
	nondet := Finding{File: "build/log", Rule: RuleNondeterministic, Output: "out/log", Index: 1}
	pending := Finding{File: "build/gen.h", Rule: RuleNotJudged, Index: 0}
	failed := Finding{File: "build/x", Rule: RuleRewriteFailed, Index: 3}
	for _, c := range []struct {
		name        string
		findings    []Finding
		exact       bool
		rule        rewrite.Rule
		rebuildFrom string
		summary     string // a part of it
	}{
		{"nothing unexplained", nil, true, RuleMapExplainsAll, "", "the path map explains every byte"},
		{"bytes reach nothing", []Finding{unreachable}, true, RuleUnreachable, "", "build/config.log"},
		{"nondeterminism reaching an output", []Finding{nondet, unreachable}, true, RuleNondeterministic, "", "differ between any two builds"},
		{"judged after the build", []Finding{pending, nondet}, true, RuleNotJudged, "", "build/gen.h"},
		{"the strongest rule decides, from the first producer", []Finding{unreachable, section, buildID}, false, rewrite.RuleBuildID, "buildPhase",
			"build-id: 1 file(s): build/prog → out/bin/prog; also section-survives 1"},
		{"a copied file is named first", []Finding{section, copied}, false, rewrite.RuleInstalled, "configurePhase", "build/data → out/share/data"},
		{"a failed rewrite beats every other rule", []Finding{buildID, failed, pending}, false, RuleRewriteFailed, "buildPhase", "build/x"},
	} {
		ex := Decide(c.findings, phases)
		if ex.Exact != c.exact || ex.Rule != c.rule || ex.RebuildFrom != c.rebuildFrom || !strings.Contains(ex.Summary, c.summary) {
			t.Errorf("%s: got exact %v rule %s from %q summary %q; want %v %s from %q with %q", c.name, ex.Exact, ex.Rule, ex.RebuildFrom, ex.Summary, c.exact, c.rule, c.rebuildFrom, c.summary)
		}
		if ex.RebuildIndex < 0 || c.rebuildFrom != "" && phases[ex.RebuildIndex] != c.rebuildFrom {
			t.Errorf("%s: rebuild index %d", c.name, ex.RebuildIndex)
		}
	}
	// Many files: the summary stays one short line.
	var many []Finding
	for range 500 {
		many = append(many, section)
	}
	if ex := Decide(many, phases); len(ex.Summary) > 200 || !strings.Contains(ex.Summary, "and 497 more") {
		t.Fatalf("summary of 500 files: %q", ex.Summary)
	}
}

func TestFailedRewriteIsNeverExact(t *testing.T) {
	ex := Failed(&rewrite.Verdict{Failed: []string{"build/x: does not hold the learned hash bytes at offset 3"}}, map[string]int{"build/x": 2}, phases)
	if ex.Exact || ex.Rule != RuleRewriteFailed || ex.Findings[0].File != "build/x" || ex.RebuildFrom != "buildPhase" {
		t.Fatalf("got %+v", ex)
	}
	// A failure of the map itself, or producers unknown: everything is rebuilt.
	ex = Failed(&rewrite.Verdict{Failed: []string{"build/x: bad", "no colon"}}, map[string]int{"build/x": 2}, phases)
	if f := ex.Findings[0]; f.File != "(map)" || f.Why != "no colon" || ex.RebuildFrom != "unpackPhase" {
		t.Fatalf("a failure without a file: %+v", ex)
	}
	if ex := Failed(&rewrite.Verdict{Failed: []string{"build/x: bad"}}, nil, phases); ex.RebuildIndex != 0 || ex.RebuildFrom != "unpackPhase" {
		t.Fatalf("unknown producer: %+v", ex)
	}
}

// Judge and Predict: how each unexplained file reached the outputs (or
// was learned to) decides its rule.
func TestJudgeAndPredict(t *testing.T) {
	us := []rewrite.Unexplained{
		{Path: "build/a", Why: "w"},
		{Path: "build/b", Why: "w", Cause: rewrite.CauseNondeterministic},
		{Path: "build/c", Why: "w"},
		{Path: "build/d", Why: "w"},
	}
	reach := []*rewrite.Reach{
		{}, // reaches nothing
		{Rule: rewrite.RuleInstalled, Output: "out/b"},
		{Rule: rewrite.RuleSection, Output: "out/c", Detail: ".debug_info"},
		nil, // not judged
	}
	fs := Judge(us, reach, map[string]int{"build/c": 2, "build/d": 3}, phases)
	want := []struct {
		rule  rewrite.Rule
		phase string
	}{{RuleUnreachable, "unpackPhase"}, {RuleNondeterministic, "unpackPhase"}, {rewrite.RuleSection, "buildPhase"}, {RuleNotJudged, "installPhase"}}
	for i, f := range fs {
		if f.Rule != want[i].rule || f.Phase != want[i].phase {
			t.Errorf("%s: %s in %s, want %s in %s", f.File, f.Rule, f.Phase, want[i].rule, want[i].phase)
		}
	}
	if fs[2].Reach() != " → out/c (.debug_info)" || fs[0].Reach() != "" {
		t.Errorf("reach texts: %q %q", fs[2].Reach(), fs[0].Reach())
	}
	m := &rewrite.Map{Unexplained: []rewrite.Unexplained{{Path: "build/c", Learned: &rewrite.Reach{Rule: rewrite.RuleSection, Output: "out/c"}}}}
	if ex := Predict(m, map[string]int{"build/c": 2}, phases); ex.Exact || !ex.Predicted || ex.RebuildFrom != "buildPhase" {
		t.Errorf("prediction: %+v", ex)
	}
	if ex := Predict(&rewrite.Map{Problems: []string{"build/y: ambiguous"}}, nil, phases); ex.Exact || ex.Rule != RuleRewriteFailed {
		t.Errorf("a map with problems: %+v", ex)
	}
	if got := Message(Decide([]Finding{buildID()}, phases)); !strings.HasPrefix(got, "outputs NOT exact: build-id") || !strings.HasSuffix(got, "an exact build reruns buildPhase") {
		t.Errorf("message: %q", got)
	}
}

func buildID() Finding {
	return Finding{File: "build/prog", Rule: rewrite.RuleBuildID, Output: "out/bin/prog", Index: 2}
}

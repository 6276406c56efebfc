package runner

import (
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/rewrite"
)

func TestDecideNamesTheRuleAndThePhase(t *testing.T) {
	phases := []PhasePlan{{Name: "unpackPhase"}, {Name: "configurePhase"}, {Name: "buildPhase"}, {Name: "installPhase"}}
	fs := []Finding{
		{File: "build/config.log", Rule: RuleUnreachable, index: 1},
		{File: "build/a.o", Rule: rewrite.RuleSection, Output: "debug/x.debug", index: 2},
		{File: "build/prog", Rule: rewrite.RuleBuildID, Output: "out/bin/prog", index: 2},
	}
	ex := decide(fs, phases)
	if ex.Exact || ex.Rule != rewrite.RuleBuildID || ex.RebuildFrom != "buildPhase" || ex.RebuildIndex != 2 {
		t.Fatalf("got %+v", ex)
	}
	if want := "build-id: 1 file(s): build/prog → out/bin/prog; also section-survives 1"; ex.Summary != want {
		t.Fatalf("summary %q, want %q", ex.Summary, want)
	}

	ex = decide(fs[:1], phases)
	if !ex.Exact || ex.Rule != RuleUnreachable || !strings.Contains(ex.Summary, "build/config.log") {
		t.Fatalf("unreachable bytes: %+v", ex)
	}
	ex = decide([]Finding{{File: "build/log", Rule: RuleNondeterministic, Output: "out/log", index: 1}, fs[0]}, phases)
	if !ex.Exact || ex.Rule != RuleNondeterministic {
		t.Fatalf("nondeterministic bytes that reach an output: %+v", ex)
	}
	if ex = decide(nil, phases); !ex.Exact || ex.Rule != RuleMapExplainsAll {
		t.Fatalf("nothing unexplained: %+v", ex)
	}
	// Many files: the summary stays one short line.
	var many []Finding
	for i := 0; i < 500; i++ {
		many = append(many, Finding{File: "build/gen/f.o", Rule: rewrite.RuleSection, Output: "out/bin/prog", index: 2})
	}
	if ex = decide(many, phases); len(ex.Summary) > 200 || !strings.Contains(ex.Summary, "and 497 more") {
		t.Fatalf("summary of 500 files: %q", ex.Summary)
	}
}

func TestFailedRewriteIsNeverExact(t *testing.T) {
	phases := []PhasePlan{{Name: "configurePhase"}, {Name: "buildPhase"}}
	ex := failedExactness(&rewrite.Verdict{Failed: []string{"build/x: does not hold the learned hash bytes at offset 3"}}, map[string]int{"build/x": 1}, phases)
	if ex.Exact || ex.Rule != RuleRewriteFailed || ex.Findings[0].File != "build/x" || ex.RebuildFrom != "buildPhase" {
		t.Fatalf("got %+v", ex)
	}
}

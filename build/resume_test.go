package build

import (
	"testing"

	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
)

// What a build does with the rewrite of its reused layers.
func TestAfterRewrite(t *testing.T) {
	exact := &rewrite.Verdict{Exact: true}
	unexplained := &rewrite.Verdict{Unexplained: []rewrite.Unexplained{{Path: "out/lib/x.a"}}}
	failed := &rewrite.Verdict{Failed: []string{"out/bin/x: ambiguous fragment"}}
	for _, c := range []struct {
		name                      string
		v                         *rewrite.Verdict
		provisional, exact, ofMap bool
		want                      rewriteStep
	}{
		{"provisional: settled later, whatever the verdict", failed, true, false, false, rewriteSettleLater},
		{"exact: nothing to judge", exact, false, true, true, rewriteExact},
		{"unexplained bytes, an exact build with a map: the last build predicts", unexplained, false, true, true, rewritePredict},
		{"unexplained bytes, an exact build by hash substitution: the outputs judge", unexplained, false, true, false, rewriteJudge},
		{"unexplained bytes, not exact: the outputs judge", unexplained, false, false, true, rewriteJudge},
		{"failed, not exact: goes on unverified", failed, false, false, true, rewriteUnverified},
		{"failed, exact: falls back", failed, false, true, true, rewriteFallBack},
		{"failed without a map, exact: falls back", failed, false, true, false, rewriteFallBack},
	} {
		if got := afterRewrite(c.v, c.provisional, c.exact, c.ofMap); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// Where an exact build falls back to, and the reason its first rerun
// phase gives.
func TestFallbacks(t *testing.T) {
	fromBuild := &verdict.Exactness{Rule: rewrite.RuleBuildID, RebuildFrom: "buildPhase", RebuildIndex: 1}
	fromLater := &verdict.Exactness{Rule: rewrite.RuleInstalled, RebuildFrom: "installPhase", RebuildIndex: 4}
	for _, c := range []struct {
		name string
		got  fallback
		want fallback
	}{
		{"judged inexact: reruns from the phase that made the bytes", inexactFallBack(fromBuild, 3, false),
			fallback{1, "the reused buildPhase made bytes that reach the outputs and cannot be rewritten (build-id)"}},
		{"predicted inexact: as the last build saw", inexactFallBack(fromBuild, 3, true),
			fallback{1, "the reused buildPhase made bytes that reached the outputs of the last build and cannot be rewritten (build-id)"}},
		{"an index past the reused phases: the last reused one reruns at least", inexactFallBack(fromLater, 3, false),
			fallback{2, "the reused installPhase made bytes that reach the outputs and cannot be rewritten (installed-as-is)"}},
		{"a failed rewrite: the last reused phase reruns", failedRewriteFallBack(3),
			fallback{2, "reused layers could not be rewritten exactly for the new output paths"}},
	} {
		if c.got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, c.got, c.want)
		}
	}
}

// What a build does once the outputs of its resume are judged.
func TestJudgedResume(t *testing.T) {
	exact := &verdict.Exactness{Exact: true}
	inexact := &verdict.Exactness{Rule: rewrite.RuleBuildID, RebuildFrom: "buildPhase", RebuildIndex: 1}
	for _, c := range []struct {
		name                  string
		ex                    *verdict.Exactness
		reusedVerified, exact bool
		verified              bool
		fb                    *fallback
	}{
		{"exact on verified layers: verified", exact, true, true, true, nil},
		{"exact on unverified layers: stands, not verified", exact, false, false, false, nil},
		{"inexact, not exact: stands, not verified", inexact, true, false, false, nil},
		{"inexact, exact: falls back", inexact, true, true, false,
			&fallback{1, "the reused buildPhase made bytes that reach the outputs and cannot be rewritten (build-id)"}},
	} {
		verified, fb := judgedResume(c.ex, c.reusedVerified, c.exact, 3)
		if verified != c.verified || (fb == nil) != (c.fb == nil) || (fb != nil && *fb != *c.fb) {
			t.Errorf("%s: %v %+v, want %v %+v", c.name, verified, fb, c.verified, c.fb)
		}
	}
}

// The line a fallback prints.
func TestFallBackMessage(t *testing.T) {
	phases := []string{"unpackPhase", "configurePhase", "buildPhase", "installPhase"}
	for _, c := range []struct {
		name string
		keep int
		want string
	}{
		{"nothing kept", 0, "outputs would not be exact; rebuilding every phase with the real output paths"},
		{"a prefix kept", 2, "outputs would not be exact; keeping 2 phases and rebuilding from buildPhase with the real output paths"},
	} {
		if got := fallBackMessage(c.keep, phases); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// Which prefix a fallback keeps: one whose map applies and whose rewrite
// does not fail.
func TestExactPrefixSteps(t *testing.T) {
	for _, c := range []struct {
		name string
		m    *rewrite.Map
		want bool
	}{
		{"no map", nil, false},
		{"a map with problems", &rewrite.Map{Problems: []string{"ambiguous fragment"}}, false},
		{"a map", &rewrite.Map{}, true},
	} {
		if got := mapApplies(c.m); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		v    *rewrite.Verdict
		want prefixStep
	}{
		{"failed: one phase fewer", &rewrite.Verdict{Failed: []string{"x: ambiguous"}, Unexplained: []rewrite.Unexplained{{Path: "y"}}}, prefixShorter},
		{"exact: kept, nothing to judge", &rewrite.Verdict{Exact: true}, prefixExact},
		{"unexplained bytes: kept, the outputs judge", &rewrite.Verdict{Unexplained: []rewrite.Unexplained{{Path: "y"}}}, prefixJudged},
	} {
		if got := prefixRewrite(c.v); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

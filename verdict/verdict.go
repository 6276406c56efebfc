// Package verdict is the engine's judgement of a resume that reused
// layers built for other output paths: the rules, the findings (each file
// whose bytes the path map cannot explain, judged by how it reaches the
// outputs) and the verdict they add up to, with the phase an exact build
// reruns from. Pure functions over phase names: the runner judges its
// builds, plans predict, verify reports with it.
package verdict

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/rewrite"
)

// Rules that decide a resume exact, besides rewrite's reaching rules
// (rewrite.RuleInstalled, RuleSection, RuleBuildID, RuleUnsure), which
// decide it inexact: a verdict names one rule of either set.
const (
	// RuleMapExplainsAll: the path map explains every byte of the reused
	// layers; the rewrite alone is exact.
	RuleMapExplainsAll rewrite.Rule = "map-explains-all"
	// RuleUnreachable: the bytes the map cannot explain reach no output
	// (e.g. debug info stripped from a binary that carries no build-id).
	RuleUnreachable rewrite.Rule = "unreachable"
	// RuleNondeterministic: the unexplained bytes that reach an output
	// change in a rerun with the same paths too: the build's own
	// nondeterminism, one valid outcome as any cached layer is.
	RuleNondeterministic rewrite.Rule = "nondeterministic"
	// RuleRewriteFailed: the map could not be applied (no map, a tree
	// that is not the one the map was learned on, ambiguous fragments).
	RuleRewriteFailed rewrite.Rule = "rewrite-failed"
	// RuleNotJudged (plans only): the outputs the bytes could reach are
	// known only after the build.
	RuleNotJudged rewrite.Rule = "judged-after-build"
)

// Exactness is the engine's verdict on a build that reused layers built
// for other output paths: whether its outputs are what a clean build with
// the new paths gives, which rule decided, and, when they are not, the
// phase an exact build must rerun from. Plans carry a prediction; build
// results and `nixlayer verify` the verdict on the actual outputs.
type Exactness struct {
	Exact bool `json:"exact"`
	// Rule is the rule that decided (Rule… here and in rewrite).
	Rule rewrite.Rule `json:"rule"`
	// Summary is one short line for logs: the rule, the first few files
	// and a count.
	Summary string `json:"summary"`
	// Findings are every file whose bytes the map cannot explain (or the
	// rewrite's failures), each with the rule that judged it.
	Findings []Finding `json:"findings,omitempty"`
	// RebuildFrom is the phase that produced the first offending bytes:
	// an exact build keeps the phases before it (rewritten with their
	// maps) and reruns from it. RebuildIndex is its index in the plan.
	RebuildFrom  string `json:"rebuildFrom,omitempty"`
	RebuildIndex int    `json:"rebuildIndex,omitempty"`
	// Predicted: judged on the outputs of the build the map was learned
	// from (a plan), not on this build's.
	Predicted bool `json:"predicted,omitempty"`
}

// Finding is one file of the reused layers whose bytes the map cannot
// explain, and how it was judged.
type Finding struct {
	File string `json:"file"`
	// Phase produced the bytes (the first phase whose layer holds them).
	Phase string `json:"phase,omitempty"`
	Why   string `json:"why"`
	// Cause: rewrite.CauseNondeterministic, rewrite.CausePath, or ""
	// when the learner did not need to tell (the bytes reached nothing).
	Cause  rewrite.Cause `json:"cause,omitempty"`
	Rule   rewrite.Rule  `json:"rule"`
	Output string        `json:"output,omitempty"` // the output file the bytes reach
	Detail string        `json:"detail,omitempty"`
	Copy   bool          `json:"copy,omitempty"` // Output is a copy of the whole file

	// Index is Phase's index among the phases judged.
	Index int `json:"-"`
}

// offends reports whether the finding makes the build inexact.
func (f Finding) offends() bool {
	switch f.Rule {
	case RuleUnreachable, RuleNondeterministic, RuleNotJudged:
		return false
	}
	return true
}

// Reach is how the finding's bytes reach an output, for a line after its
// file (" → out/bin/x (detail)"); "" when they reach none.
func (f Finding) Reach() string {
	if f.Output == "" {
		return ""
	}
	return " → " + f.Output + " (" + f.Detail + ")"
}

func (f Finding) String() string {
	s := f.File
	if f.Output != "" {
		s += " → " + f.Output
	}
	return s
}

// Decide turns judged findings into a verdict: inexact if any offends,
// rebuilding from the earliest phase that produced offending bytes.
// phases are the names of the phases the findings' indexes count.
func Decide(findings []Finding, phases []string) *Exactness {
	ex := &Exactness{Exact: true, Findings: findings, RebuildIndex: -1}
	sort.SliceStable(ex.Findings, func(i, j int) bool { return ex.Findings[i].Index < ex.Findings[j].Index })
	var offending, reaching, pending []Finding
	for _, f := range findings {
		switch {
		case f.offends():
			offending = append(offending, f)
			if ex.RebuildIndex < 0 || f.Index < ex.RebuildIndex {
				ex.RebuildIndex = f.Index
			}
		case f.Rule == RuleNondeterministic:
			reaching = append(reaching, f)
		case f.Rule == RuleNotJudged:
			pending = append(pending, f)
		}
	}
	switch {
	case len(offending) > 0:
		ex.Exact = false
		ex.Rule = strongestRule(offending)
		ex.Summary = fmt.Sprintf("%s: %s", ex.Rule, byRule(offending, ex.Rule))
		if ex.RebuildIndex >= 0 && ex.RebuildIndex < len(phases) {
			ex.RebuildFrom = phases[ex.RebuildIndex]
		}
	case len(pending) > 0:
		ex.Rule = RuleNotJudged
		ex.Summary = fmt.Sprintf("%s: unexplained bytes in %s", ex.Rule, listFew(pending, 3))
	case len(reaching) > 0:
		ex.Rule = RuleNondeterministic
		ex.Summary = fmt.Sprintf("%s: the unexplained bytes that reach the outputs differ between any two builds (%s)", ex.Rule, listFew(reaching, 3))
	case len(findings) > 0:
		ex.Rule = RuleUnreachable
		ex.Summary = fmt.Sprintf("%s: the unexplained bytes reach no output (%s)", ex.Rule, listFew(findings, 3))
	default:
		ex.Rule = RuleMapExplainsAll
		ex.Summary = string(RuleMapExplainsAll) + ": the path map explains every byte"
	}
	if ex.RebuildIndex < 0 {
		ex.RebuildIndex = 0
	}
	return ex
}

// strongestRule names the most direct evidence among offending findings:
// a failed rewrite, else the strongest of rewrite's reaching rules.
func strongestRule(fs []Finding) rewrite.Rule {
	best := fs[0].Rule
	for _, f := range fs {
		if f.Rule == RuleRewriteFailed {
			return f.Rule
		}
		if f.Rule.Strength() > best.Strength() {
			best = f.Rule
		}
	}
	return best
}

// byRule names the first findings the deciding rule judged and counts
// the others by their rule.
func byRule(fs []Finding, rule rewrite.Rule) string {
	var decided []Finding
	others := map[rewrite.Rule]int{}
	for _, f := range fs {
		if f.Rule == rule {
			decided = append(decided, f)
		} else {
			others[f.Rule]++
		}
	}
	// Whole files copied into an output first: the plainest evidence.
	sort.SliceStable(decided, func(i, j int) bool { return decided[i].Copy && !decided[j].Copy })
	s := listFew(decided, 3)
	if len(others) > 0 {
		var parts []string
		for _, r := range slices.Sorted(maps.Keys(others)) {
			parts = append(parts, fmt.Sprintf("%s %d", r, others[r]))
		}
		s += "; also " + strings.Join(parts, ", ")
	}
	return s
}

// listFew names the first n findings and counts the rest, for log lines.
func listFew(fs []Finding, n int) string {
	var names []string
	for i, f := range fs {
		if i == n {
			break
		}
		names = append(names, f.String())
	}
	s := strings.Join(names, ", ")
	if len(fs) > n {
		s += fmt.Sprintf(" and %d more", len(fs)-n)
	}
	return fmt.Sprintf("%d file(s): %s", len(fs), s)
}

// Failed is the verdict when the rewrite itself failed: nothing about the
// outputs can save it. producer and phases name the phase that made each
// file (nil: unknown, rebuild everything).
func Failed(v *rewrite.Verdict, producer map[string]int, phases []string) *Exactness {
	var fs []Finding
	for _, why := range v.Failed {
		file, reason, ok := strings.Cut(why, ": ")
		if !ok {
			file, reason = "(map)", why
		}
		f := Finding{File: file, Why: reason, Rule: RuleRewriteFailed}
		if i, ok := producer[file]; ok && i < len(phases) {
			f.Index, f.Phase = i, phases[i]
		}
		fs = append(fs, f)
	}
	return Decide(fs, phases)
}

// Judge judges each unexplained file by how it reaches the outputs (reach,
// same order; nil entries: not judged) and its cause; producer and phases
// name the phase that made each file.
func Judge(us []rewrite.Unexplained, reach []*rewrite.Reach, producer map[string]int, phases []string) []Finding {
	var fs []Finding
	for i, u := range us {
		f := Finding{File: u.Path, Why: u.Why, Cause: u.Cause, Index: producer[u.Path]}
		if f.Index < len(phases) {
			f.Phase = phases[f.Index]
		}
		r := reach[i]
		switch {
		case r == nil:
			f.Rule = RuleNotJudged
		case r.Rule == "":
			f.Rule = RuleUnreachable
		case u.Cause == rewrite.CauseNondeterministic:
			f.Rule, f.Output, f.Detail = RuleNondeterministic, r.Output, r.Detail
		default:
			f.Rule, f.Output, f.Detail, f.Copy = r.Rule, r.Output, r.Detail, r.Copy
		}
		fs = append(fs, f)
	}
	return fs
}

// Predict is a plan's view of a rewrite with map m: each unexplained file
// judged as it was on the outputs of the build the map was learned from,
// or left to be judged after the build.
func Predict(m *rewrite.Map, producer map[string]int, phases []string) *Exactness {
	if len(m.Problems) > 0 {
		return Failed(&rewrite.Verdict{Failed: m.Problems}, nil, phases)
	}
	reach := make([]*rewrite.Reach, len(m.Unexplained))
	for i, u := range m.Unexplained {
		reach[i] = u.Learned
	}
	ex := Decide(Judge(m.Unexplained, reach, producer, phases), phases)
	ex.Predicted = true
	return ex
}

// Message is the one log line about the outputs' exactness.
func Message(ex *Exactness) string {
	if ex.Exact {
		return "outputs exact: " + ex.Summary
	}
	msg := "outputs NOT exact: " + ex.Summary
	if ex.RebuildFrom != "" {
		msg += "; an exact build reruns " + ex.RebuildFrom
	}
	return msg
}

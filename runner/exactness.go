package runner

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
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

	index int // of Phase in the plan
}

// offends reports whether the finding makes the build inexact.
func (f Finding) offends() bool {
	switch f.Rule {
	case RuleUnreachable, RuleNondeterministic, RuleNotJudged:
		return false
	}
	return true
}

func (f Finding) String() string {
	s := f.File
	if f.Output != "" {
		s += " → " + f.Output
	}
	return s
}

// exactnessKey names the layer data holding the verdict on a build's
// outputs (on the build's top layer), read by verify.
const exactnessKey = "exactness"

// decide turns judged findings into a verdict: inexact if any offends,
// rebuilding from the earliest phase that produced offending bytes.
func decide(findings []Finding, phases []PhasePlan) *Exactness {
	ex := &Exactness{Exact: true, Findings: findings, RebuildIndex: -1}
	sort.SliceStable(ex.Findings, func(i, j int) bool { return ex.Findings[i].index < ex.Findings[j].index })
	var offending, reaching, pending []Finding
	for _, f := range findings {
		switch {
		case f.offends():
			offending = append(offending, f)
			if ex.RebuildIndex < 0 || f.index < ex.RebuildIndex {
				ex.RebuildIndex = f.index
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
			ex.RebuildFrom = phases[ex.RebuildIndex].Name
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
		for _, r := range sortedKeys(others) {
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

// failedExactness is the verdict when the rewrite itself failed: nothing
// about the outputs can save it. producer and phases name the phase that
// made each file (nil: unknown, rebuild everything).
func failedExactness(v *rewrite.Verdict, producer map[string]int, phases []PhasePlan) *Exactness {
	var fs []Finding
	for _, why := range v.Failed {
		file, reason, ok := strings.Cut(why, ": ")
		if !ok {
			file, reason = "(map)", why
		}
		f := Finding{File: file, Why: reason, Rule: RuleRewriteFailed}
		if i, ok := producer[file]; ok && i < len(phases) {
			f.index, f.Phase = i, phases[i].Name
		}
		fs = append(fs, f)
	}
	return decide(fs, phases)
}

// producers finds, for each unexplained file of the reused chain, the
// phase that produced it: the first layer whose map lists it. chain is
// the reused phase layers, oldest first.
func (e *Engine) producers(chain []*layers.Layer) map[string]int {
	first := map[string]int{}
	for i, l := range chain {
		m := e.storedMap(l.ID)
		if m == nil {
			continue
		}
		for _, u := range m.Unexplained {
			if _, ok := first[u.Path]; !ok {
				first[u.Path] = i
			}
		}
	}
	return first
}

// judgeOutputs decides whether a build on rewritten layers is exact: the
// rewrite's unexplained bytes (in tree, the rewritten layer the later
// phases started from) are followed into the finished outputs (outputs:
// name → directory). Bytes the learner found nondeterministic do not count.
func (e *Engine) judgeOutputs(v *rewrite.Verdict, m *rewrite.Map, chain []*layers.Layer, phases []PhasePlan, tree string, paths, outputs map[string]string) (*Exactness, error) {
	if len(v.Failed) > 0 {
		return failedExactness(v, e.producers(chain), phases), nil
	}
	resolve := func(rel string) string { return rel }
	if m != nil {
		resolve = func(rel string) string { return m.PathIn(rel, paths) }
	}
	reach, err := rewrite.Reaches(tree, v.Unexplained, resolve, outputs)
	if err != nil {
		return nil, fmt.Errorf("following unexplained bytes into the outputs: %w", err)
	}
	judged := make([]*rewrite.Reach, len(reach))
	byPath := map[string]rewrite.Reach{}
	for i := range reach {
		judged[i] = &reach[i]
		byPath[v.Unexplained[i].Path] = reach[i]
	}
	// The next plan predicts from this build's outputs.
	if err := e.annotateMaps(chain, byPath, nil); err != nil {
		e.log.Warn("recording how unexplained bytes reached the outputs", zap.Error(err))
	}
	return decide(findings(v.Unexplained, judged, e.producers(chain), phases), phases), nil
}

// findings judges each unexplained file by how it reaches the outputs
// (reach, same order; nil entries: not judged) and its cause.
func findings(us []rewrite.Unexplained, reach []*rewrite.Reach, producer map[string]int, phases []PhasePlan) []Finding {
	var fs []Finding
	for i, u := range us {
		f := Finding{File: u.Path, Why: u.Why, Cause: u.Cause, index: producer[u.Path]}
		if f.index < len(phases) {
			f.Phase = phases[f.index].Name
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

// predictExactness is the plan's view of a rewrite with map m: each
// unexplained file judged as it was on the outputs of the build the map
// was learned from, or left to be judged after the build.
func (e *Engine) predictExactness(m *rewrite.Map, chain []*layers.Layer, phases []PhasePlan) *Exactness {
	if len(m.Problems) > 0 {
		return failedExactness(&rewrite.Verdict{Failed: m.Problems}, nil, phases)
	}
	reach := make([]*rewrite.Reach, len(m.Unexplained))
	for i, u := range m.Unexplained {
		reach[i] = u.Learned
	}
	ex := decide(findings(m.Unexplained, reach, e.producers(chain), phases), phases)
	ex.Predicted = true
	return ex
}

// outputDirs maps output names to their directories in a layer's tree.
func outputDirs(root string, outputs map[string]string) map[string]string {
	dirs := map[string]string{}
	for name, p := range outputs {
		dirs[name] = filepath.Join(root, "store", filepath.Base(p))
	}
	return dirs
}

func (e *Engine) saveExactness(id string, ex *Exactness) {
	if data, err := json.Marshal(ex); err == nil {
		_ = e.layers.SetData(id, exactnessKey, data)
	}
}

func (e *Engine) loadExactness(id string) *Exactness {
	data, err := e.layers.Data(id, exactnessKey)
	if err != nil {
		return nil
	}
	var ex Exactness
	if json.Unmarshal(data, &ex) != nil {
		return nil
	}
	return &ex
}

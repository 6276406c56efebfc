// Package analysis computes the status of a buffer's derivation calls, a
// pure function of the parsed buffer (nixexpr) and its last evaluation
// (package target): each call paired with its evaluated derivation, its
// phases' states from the plan, the failure the history remembers and the
// unsaved edits, and its phase attributes with their positions and the
// phase each belongs to (the plan's placements, else phaserules). The
// lenses, hovers and diagnostics of package lsp and lsp/lens read it.
package analysis

import (
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/planner"
)

// What each phase's status is, which attributes belong to which phase, and
// what an unsaved edit invalidates. Nothing here talks to a client, to Nix
// or to the layer store.

// Phase states, as shown by lenses and hovers.
const (
	StateUnknown     = "unknown"     // no plan (yet)
	StateCached      = "cached"      // the plan found its layer
	StateRun         = "run"         // the plan says it must run
	StateInvalidated = "invalidated" // an unsaved edit invalidates it
	StateFailed      = "failed"      // the last build failed in it
	StateForced      = "forced"      // reused by --from although its key differs
)

// PhaseView is the status of one phase of a buffer derivation.
type PhaseView struct {
	Name  string
	Index int // 0-based
	State string
	// Cause names what invalidated the phase: the edited or changed
	// attributes, or the reason of the plan.
	Cause string
	Exit  int                // of a failed phase
	Plan  *planner.PhasePlan // nil without a plan
}

// AttrView is a phase attribute of the buffer.
type AttrView struct {
	Attr  nixexpr.Attribute
	Phase string // "" when no phase list is known
	Why   string
	// Edited is true when the buffer's value differs from the evaluated one.
	Edited bool
}

// DerivView is a derivation call of the buffer with its status.
type DerivView struct {
	Deriv  nixexpr.Derivation
	Pkg    *target.Package // nil when no evaluated derivation matches
	Phases []PhaseView
	Attrs  []AttrView // the phase attributes, in source order
	// Edited lists the attributes changed (or added, removed) since the
	// evaluation, in source order.
	Edited []string
}

// Analyze computes the status of every derivation call in the buffer.
//
// In a buffer with syntax errors an attribute that vanished is not counted
// as removed: the breakage may only hide it for now.
func Analyze(f *syntax.File, ev *target.Evaluation) []DerivView {
	derivs := nixexpr.FindDerivations(f)
	var out []DerivView
	for i, d := range derivs {
		v := DerivView{Deriv: d}
		if ev != nil {
			v.Pkg = target.MatchPackage(d, i, len(derivs), ev.Packages)
		}
		analyzeDeriv(&v, len(f.Diagnostics) > 0)
		out = append(out, v)
	}
	return out
}

func analyzeDeriv(v *DerivView, broken bool) {
	var phases []string
	placedBy := map[string]int{} // attribute → phase index, from the runner's plan
	if v.Pkg != nil && v.Pkg.Plan != nil {
		for i, ph := range v.Pkg.Plan.Phases {
			phases = append(phases, ph.Name)
			for _, a := range ph.Attrs {
				if _, ok := placedBy[a]; !ok {
					placedBy[a] = i
				}
			}
		}
	}
	rules := phaserules.New(phases, phaserules.Reads{})
	whole := v.Pkg != nil && v.Pkg.Plan != nil && v.Pkg.Plan.Whole
	// place is the phase index of an attribute and the rule that put it
	// there: the runner's (the plan's placements, made with the stdenv's
	// reads) when it placed the attribute, else the rules without them.
	place := func(name string) (int, phaserules.Placement) {
		if len(phases) == 0 {
			return -1, phaserules.Placement{}
		}
		pl := rules.Place(name)
		if whole {
			return 0, phaserules.Placement{Phase: phases[0], Rule: pl.Rule, Why: "built as one layer: " + v.Pkg.Plan.WhyWhole}
		}
		if planned, ok := v.Pkg.Plan.Placements[name]; ok {
			pl = planned
		}
		if i, ok := placedBy[name]; ok {
			return i, pl
		}
		return indexOf(phases, pl.Phase), pl
	}

	// Which attributes differ from the evaluated derivation?
	texts := target.AttrTexts(v.Deriv)
	edited := map[string]bool{}
	if v.Pkg != nil && v.Pkg.Texts != nil {
		for _, a := range v.Deriv.Attributes {
			if edited[a.Name] || texts[a.Name] == v.Pkg.Texts[a.Name] {
				continue
			}
			if _, had := v.Pkg.Texts[a.Name]; had && sameValue(a, texts[a.Name], v.Pkg.Env) {
				continue
			}
			edited[a.Name] = true
			v.Edited = append(v.Edited, a.Name)
		}
		var removed []string
		for name := range v.Pkg.Texts {
			if _, ok := texts[name]; !ok && !broken {
				removed = append(removed, name)
			}
		}
		sort.Strings(removed)
		v.Edited = append(v.Edited, removed...)
	}

	// The first phase an edit invalidates; every later one follows.
	firstEdit, cause := -1, ""
	for _, name := range v.Edited {
		i, _ := place(name)
		if i < 0 {
			continue
		}
		if firstEdit < 0 || i < firstEdit {
			firstEdit, cause = i, name
		}
	}

	if v.Pkg != nil && v.Pkg.Plan != nil {
		plan := v.Pkg.Plan
		firstRun := -1
		for i := range plan.Phases {
			ph := &plan.Phases[i]
			pv := PhaseView{Name: ph.Name, Index: i, Plan: ph}
			switch ph.Status {
			case planner.StatusCached:
				pv.State = StateCached
			case planner.StatusForced:
				pv.State, pv.Cause = StateForced, ph.Reason
			default:
				pv.State = StateRun
				if firstRun < 0 {
					firstRun = i
				}
				pv.Cause = runCause(plan.Phases[firstRun])
			}
			if f := v.Pkg.Failure; f != nil && f.Phase == ph.Name && ph.Status != planner.StatusCached {
				pv.State, pv.Cause, pv.Exit = StateFailed, f.LogTail, f.Exit
			}
			if firstEdit >= 0 && i >= firstEdit {
				pv.State, pv.Cause = StateInvalidated, cause
			}
			v.Phases = append(v.Phases, pv)
		}
	}

	for _, a := range v.Deriv.Attributes {
		i, pl := place(a.Name)
		if !IsPhaseAttr(a.Name, pl, phases) {
			continue
		}
		av := AttrView{Attr: a, Why: pl.Why, Edited: edited[a.Name]}
		if i >= 0 {
			av.Phase = phases[i]
		}
		v.Attrs = append(v.Attrs, av)
	}
}

// runCause says why the first phase to run must run.
func runCause(ph planner.PhasePlan) string {
	if len(ph.Changed) > 0 {
		return strings.Join(ph.Changed, ", ")
	}
	return ph.Reason
}

// IsPhaseAttr decides whether an attribute gets lenses: phase code, hooks,
// flags, switches, sources (what the stdenv consumes in a phase), and the
// attributes the package's own code names that the rule keys from the
// first phase all the same (their lens and hover say why). Global
// attributes (name, inputs, outputs) and the rest do not.
func IsPhaseAttr(name string, pl phaserules.Placement, phases []string) bool {
	if strings.HasSuffix(name, "Phase") && len(name) > len("Phase") {
		return true
	}
	if len(phases) == 0 {
		// No plan yet: rely on the names the rules know without a phase list.
		for _, pfx := range []string{"pre", "post", "dont", "do"} {
			if rest, ok := strings.CutPrefix(name, pfx); ok && rest != "" && rest[0] >= 'A' && rest[0] <= 'Z' {
				return true
			}
		}
		return strings.HasSuffix(name, "Flags") || name == "src" || name == "srcs" || name == "patches"
	}
	switch pl.Rule {
	case phaserules.RuleSetup, phaserules.RuleEnv:
		return false
	case phaserules.RuleAny, phaserules.RuleProgram:
		return pl.NamedBy != ""
	}
	return true
}

// sameValue reports whether a literal attribute has the value the
// evaluated derivation passed to the builder (an edit that was undone, or
// only reformatted).
func sameValue(a nixexpr.Attribute, _ string, env map[string]string) bool {
	got, ok := env[a.Name]
	if !ok || !a.Simple || len(a.Path) != 1 {
		return false
	}
	if a.HasString {
		return a.String == got
	}
	switch t := strings.TrimSpace(a.Text); t {
	case "true":
		return got == "1"
	case "false", "null":
		return got == ""
	default:
		return t == got // integers
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// PhaseOf returns the view of a phase by name.
func (v *DerivView) PhaseOf(name string) *PhaseView {
	for i := range v.Phases {
		if v.Phases[i].Name == name {
			return &v.Phases[i]
		}
	}
	return nil
}

// Cached counts the phases that a build would take from the cache now.
func (v *DerivView) Cached() int {
	n := 0
	for _, p := range v.Phases {
		if p.State == StateCached {
			n++
		}
	}
	return n
}

// FailureTarget is the attribute a failure in phase is reported on: the
// phase's own attribute, else one of its hooks or other attributes, else
// the derivation call.
func FailureTarget(v DerivView, phase string) syntax.Span {
	var fallback *syntax.Span
	for _, a := range v.Attrs {
		if a.Attr.Name == phase {
			return a.Attr.Key
		}
		if a.Phase == phase && fallback == nil {
			s := a.Attr.Key
			fallback = &s
		}
	}
	if fallback != nil {
		return *fallback
	}
	return v.Deriv.Func
}

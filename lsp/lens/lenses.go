// Package lens says what an editor is shown of a buffer, as pure functions
// of the parsed buffer, its last evaluation (lsp/target) and its analysis
// (lsp/analysis): the code lenses (live while a build runs, following its
// events: Running), the hovers (with the phase history), the phases an
// editor offers (nixlayer/phases), the targets to choose from
// (nixlayer/targets), the diagnostics of a failed evaluation or phase, the
// $/progress reports of a build; and the JSON of nixlayer's commands and
// requests (commands.go: the commands lenses run, their arguments and
// answers, the layer a phase's tree is read from). Package lsp sends them;
// nothing here talks to a client, to Nix or to the layer store.
package lens

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/lsp/analysis"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
	"github.com/nixlayer/nixlayer/results"
)

// LensInput is everything a lens computation looks at.
type LensInput struct {
	URI  protocol.DocumentURI
	File *syntax.File
	Eval *target.Evaluation
	// Status replaces phase statuses while there is no plan: "evaluating…",
	// "outside the workspace", an evaluation error.
	Pending string
	Running *Running
	// Now is the time ages are measured from (zero: time.Now()).
	Now time.Time
}

func (in LensInput) now() time.Time {
	if in.Now.IsZero() {
		return time.Now()
	}
	return in.Now
}

// CodeLenses returns, for every derivation call, a summary lens on the
// call and, for every phase attribute, a status lens and a "rebuild from"
// lens. A pure function of the buffer and the last evaluation.
func CodeLenses(in LensInput) []protocol.CodeLens {
	lenses := []protocol.CodeLens{}
	for i, v := range analysis.Analyze(in.File, in.Eval) {
		lenses = append(lenses, derivLenses(in, v)...)
		if i == 0 && in.Eval != nil && len(in.Eval.Choices) > 1 {
			// Several targets build this file: the first call offers them.
			lenses = append(lenses, protocol.CodeLens{Range: lineRange(in.File, v.Deriv.Func), Command: &protocol.Command{
				Title:     fmt.Sprintf("⇄ %d targets match: choose", len(in.Eval.Choices)),
				Command:   CmdChooseTarget,
				Arguments: []interface{}{CommandArgs{URI: in.URI}},
			}})
		}
	}
	return lenses
}

func derivLenses(in LensInput, v analysis.DerivView) []protocol.CodeLens {
	var out []protocol.CodeLens
	at := func(s syntax.Span) protocol.Range { return lineRange(in.File, s) }
	args := func(phase string) []interface{} {
		return []interface{}{CommandArgs{URI: in.URI, Phase: phase, Name: v.Deriv.Name}}
	}
	// Summary lens on the call.
	var summary string
	run := in.runningOf(v)
	switch {
	case run != nil:
		summary = run.summary(in.now())
	case v.Pkg != nil && v.Pkg.Plan != nil:
		summary = fmt.Sprintf("%d/%d phases cached", v.Cached(), len(v.Phases))
		if bg := backgroundText(v.Pkg); bg != "" {
			summary += " · " + bg
		}
		if st := stateAfterBuild(v.Pkg); st != nil && len(v.Edited) == 0 {
			summary += fmt.Sprintf(" · %s · %s ago", stateText(st), age(in.now().Sub(st.At)))
		}
		summary += " · ▶ build"
		if nb, noLayers := nixBuilt(v, in.now()); nb != "" && noLayers {
			summary = nb + " · " + summary
		}
		if rs := resultSummary(v.Pkg.Result); rs != "" {
			summary = rs + " · " + summary
		}
	case in.Pending != "":
		summary = in.Pending
	case in.Eval != nil && in.Eval.Err != "":
		summary = "⚠ not evaluated: " + firstLine(in.Eval.Err)
	case in.Eval == nil:
		summary = "… evaluating"
	default:
		summary = "no evaluated derivation matches this call (set nixlayer's target)"
	}
	if run == nil && in.Eval != nil && in.Eval.How != "" && in.Pending == "" {
		summary = in.Eval.How + " · " + summary
	}
	cmd := ""
	switch {
	case run != nil:
		cmd = CmdCancel
	case v.Pkg != nil && in.Running == nil:
		cmd = CmdBuild
	}
	out = append(out, protocol.CodeLens{Range: at(v.Deriv.Func), Command: &protocol.Command{Title: summary, Command: cmd, Arguments: args("")}})
	if run != nil {
		out = append(out, protocol.CodeLens{Range: at(v.Deriv.Func), Command: &protocol.Command{Title: "■ cancel", Command: CmdCancel, Arguments: args("")}})
	}

	for _, a := range v.Attrs {
		title, cmd := attrStatus(in, v, a)
		r := at(a.Attr.Key)
		out = append(out, protocol.CodeLens{Range: r, Command: &protocol.Command{Title: title, Command: cmd, Arguments: args(a.Phase)}})
		if in.Running != nil || v.Pkg == nil || v.Pkg.Plan == nil || a.Phase == "" {
			continue
		}
		if ph := v.PhaseOf(a.Phase); ph != nil && ph.State == analysis.StateFailed && firstOfPhase(v, a) {
			// What the author does next: look at the broken state.
			out = append(out,
				protocol.CodeLens{Range: r, Command: &protocol.Command{Title: "open shell here", Command: CmdOpenShell, Arguments: args(a.Phase)}},
				protocol.CodeLens{Range: r, Command: &protocol.Command{Title: "show log", Command: CmdShowLog, Arguments: args(a.Phase)}})
		}
		out = append(out, protocol.CodeLens{Range: r, Command: &protocol.Command{
			Title: "▶ rebuild from " + a.Phase, Command: CmdRebuildFrom, Arguments: args(a.Phase)}})
	}
	return out
}

// firstOfPhase tells whether a is the first attribute of its phase in the
// buffer (the failed phase's actions go there once).
func firstOfPhase(v analysis.DerivView, a analysis.AttrView) bool {
	for _, b := range v.Attrs {
		if b.Phase == a.Phase {
			return b.Attr.Key == a.Attr.Key
		}
	}
	return false
}

// runningOf is the running build a derivation call shows, or nil.
func (in LensInput) runningOf(v analysis.DerivView) *Running {
	r := in.Running
	switch {
	case r == nil:
		return nil
	case r.Drv != "" && v.Pkg != nil:
		if r.Drv == v.Pkg.DrvPath {
			return r
		}
		return nil
	case v.Pkg != nil || len(packagesOf(in.Eval)) <= 1:
		return r // still evaluating: every call may be the one
	}
	return nil
}

// packagesOf are an evaluation's packages (none without one).
func packagesOf(e *target.Evaluation) []*target.Package {
	if e == nil {
		return nil
	}
	return e.Packages
}

// attrStatus is the title of an attribute's status lens and the command
// it runs when clicked.
func attrStatus(in LensInput, v analysis.DerivView, a analysis.AttrView) (string, string) {
	ph := v.PhaseOf(a.Phase)
	if ph == nil {
		switch {
		case in.Pending != "":
			return in.Pending, ""
		case in.Eval == nil:
			return "… evaluating", ""
		case in.Eval.Err != "":
			return "⚠ not evaluated", ""
		default:
			return "? not in the plan", ""
		}
	}
	if run := in.runningOf(v); run != nil {
		if title, ok := run.phaseTitle(ph.Name, in.now()); ok {
			return title, ""
		}
		if ph.State != analysis.StateCached {
			if ph.Plan.Estimate > 0 {
				return "◌ queued · ~" + elapsed(ph.Plan.Estimate), ""
			}
			return "◌ queued", ""
		}
	}
	return phaseTitle(*ph), phaseCommand(*ph)
}

func phaseTitle(ph analysis.PhaseView) string {
	switch ph.State {
	case analysis.StateCached:
		return "✓ cached · " + seconds(ph.Plan.Layer.Duration)
	case analysis.StateInvalidated:
		return "✗ invalidated by " + ph.Cause
	case analysis.StateFailed:
		return fmt.Sprintf("✗ failed · exit %d", ph.Exit)
	case analysis.StateForced:
		return "! reused although its inputs differ"
	case analysis.StateRun:
		switch {
		case strings.HasPrefix(ph.Cause, "no earlier build"):
			return "○ not built yet"
		case strings.HasPrefix(ph.Cause, "failed last time"):
			return "✗ failed last time"
		case strings.HasPrefix(ph.Cause, "not cached"):
			return "○ not cached"
		}
		return "✗ invalidated by " + strings.TrimSuffix(ph.Cause, " changed")
	}
	return "?"
}

// phaseCommand is what clicking a phase's status does: open the tree the
// phase left (cached, or the failed state).
func phaseCommand(ph analysis.PhaseView) string {
	if ph.State == analysis.StateCached || ph.State == analysis.StateFailed {
		return CmdBrowse
	}
	return ""
}

// Hover describes the phase attribute under the offset, or returns nil.
func Hover(in LensInput, offset int, now time.Time) *protocol.Hover {
	for _, v := range analysis.Analyze(in.File, in.Eval) {
		if !v.Deriv.Call.Contains(offset) {
			continue
		}
		if v.Pkg != nil && v.Deriv.Func.Contains(offset) {
			r := lineRange(in.File, v.Deriv.Func)
			r.End = position(in.File, v.Deriv.Func.End)
			return &protocol.Hover{
				Contents: protocol.MarkupContent{Kind: protocol.Markdown, Value: summaryHover(v, now)},
				Range:    &r,
			}
		}
		for _, a := range v.Attrs {
			if !a.Attr.Key.Contains(offset) {
				continue
			}
			r := lineRange(in.File, a.Attr.Key)
			r.End = position(in.File, a.Attr.Key.End)
			return &protocol.Hover{
				Contents: protocol.MarkupContent{Kind: protocol.Markdown, Value: hoverText(in, v, a, now)},
				Range:    &r,
			}
		}
	}
	return nil
}

func hoverText(in LensInput, v analysis.DerivView, a analysis.AttrView, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", a.Attr.Name)
	if a.Phase != "" && a.Phase != a.Attr.Name {
		fmt.Fprintf(&b, " → phase `%s`", a.Phase)
	}
	if a.Why != "" {
		fmt.Fprintf(&b, " (%s)", a.Why)
	}
	b.WriteString("\n\n")
	ph := v.PhaseOf(a.Phase)
	if ph == nil {
		title, _ := attrStatus(in, v, a)
		b.WriteString(title + "\n")
		if in.Eval != nil && in.Eval.Err != "" {
			fmt.Fprintf(&b, "\n```\n%s\n```\n", logtail.Lines(in.Eval.Err, 10))
		}
		return b.String()
	}
	fmt.Fprintf(&b, "%s — phase %d of %d", phaseTitle(*ph), ph.Index+1, len(v.Phases))
	if a.Edited {
		b.WriteString(" · **edited, not saved/evaluated**")
	}
	b.WriteString("\n\n")
	if l := ph.Plan.Layer; l != nil {
		fmt.Fprintf(&b, "- layer `%s` · built %s ago · took %s · %s\n", ShortID(l.ID), age(now.Sub(l.Created)), seconds(l.Duration), layers.FormatSize(l.Size))
		if l.Unverified {
			b.WriteString("- rests on an inexact rewrite (not verified)\n")
		}
	}
	if ph.Plan.Reason != "" {
		fmt.Fprintf(&b, "- plan: %s\n", ph.Plan.Reason)
	}
	if nb, noLayers := nixBuilt(v, now); nb != "" {
		b.WriteString("- " + nb)
		if noLayers {
			b.WriteString(" (no layers: next build is cold)")
		}
		b.WriteString("\n")
	}
	if keys := ph.Plan.Attrs; len(keys) > 0 {
		shown := keys
		if len(shown) > 12 {
			shown = shown[:12]
		}
		fmt.Fprintf(&b, "- key attributes: %s", strings.Join(shown, ", "))
		if len(keys) > len(shown) {
			fmt.Fprintf(&b, " … and %d more", len(keys)-len(shown))
		}
		b.WriteString(" (+ the key of the phase before)\n")
	}
	if len(v.Edited) > 0 {
		fmt.Fprintf(&b, "- unsaved edits: %s\n", strings.Join(v.Edited, ", "))
	}
	if f := v.Pkg.Failure; f != nil && f.Phase == ph.Name {
		fmt.Fprintf(&b, "\nFailed with exit code %d (layer `%s`); last log lines:\n\n```\n%s\n```\n", f.Exit, ShortID(f.Layer), logtail.Lines(f.LogTail, 15))
	}
	if runs := lastRuns(v.Pkg.History, ph.Name, 5); len(runs) > 0 {
		b.WriteString("\nLast builds:\n")
		for _, r := range runs {
			b.WriteString("- " + runText(r, now) + "\n")
		}
	}
	return b.String()
}

// lastRuns are the newest n runs of a phase in the history, newest first.
func lastRuns(history []buildindex.PhaseRun, phase string, n int) []buildindex.PhaseRun {
	var out []buildindex.PhaseRun
	for i := len(history) - 1; i >= 0 && len(out) < n; i-- {
		if history[i].Phase == phase {
			out = append(out, history[i])
		}
	}
	return out
}

// runText says when a phase was built, how long it took, cached or run,
// and why: "3 min ago · ran 12.3 s · postInstall changed".
func runText(r buildindex.PhaseRun, now time.Time) string {
	s := age(now.Sub(r.Time)) + " ago · "
	switch r.Status {
	case buildindex.RunCached:
		return s + "cached (built in " + seconds(r.Duration) + ")"
	case buildindex.RunRan:
		s += "ran " + seconds(r.Duration)
	case buildindex.RunFailed:
		s += fmt.Sprintf("failed after %s (exit %d)", seconds(r.Duration), r.Exit)
	default:
		s += "interrupted after " + seconds(r.Duration)
	}
	switch {
	case r.Follows != "":
		s += " · after " + r.Follows
	case r.Reason != "":
		s += " · " + r.Reason
	}
	return s
}

// nixBuilt says when Nix itself last built the evaluated derivation, as
// recorded by nixlayer's post-build-hook ("built by Nix 3 min ago · 12.0
// s"), and whether the cache holds no layer of it (the next layered build
// is cold). It is "" without such a build, and while unsaved edits make
// the buffer another derivation.
func nixBuilt(v analysis.DerivView, now time.Time) (string, bool) {
	if v.Pkg == nil || v.Pkg.NixBuild == nil || len(v.Edited) > 0 {
		return "", false
	}
	b := v.Pkg.NixBuild
	s := "built by Nix " + age(now.Sub(b.End)) + " ago"
	if b.Duration > 0 {
		s += " · " + seconds(b.Duration)
	}
	noLayers := true
	if v.Pkg.Plan != nil {
		for _, ph := range v.Pkg.Plan.Phases {
			if ph.Layer != nil {
				noLayers = false
			}
		}
	}
	return s, noLayers
}

// summaryHover describes a derivation call's package: its derivation,
// what the cache holds, and the last build Nix ran itself.
func summaryHover(v analysis.DerivView, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", v.Pkg.Name)
	if v.Pkg.DrvPath != "" {
		fmt.Fprintf(&b, " · `%s`", v.Pkg.DrvPath)
	}
	b.WriteString("\n\n")
	if v.Pkg.Plan != nil {
		fmt.Fprintf(&b, "- %d/%d phases cached\n", v.Cached(), len(v.Phases))
	}
	if len(v.Edited) > 0 {
		fmt.Fprintf(&b, "- unsaved edits: %s\n", strings.Join(v.Edited, ", "))
	}
	auditHover(&b, v.Pkg.Result)
	if nb, noLayers := nixBuilt(v, now); nb != "" {
		nbd := v.Pkg.NixBuild
		fmt.Fprintf(&b, "- %s, at %s", nb, nbd.End.Local().Format("2006-01-02 15:04:05"))
		if noLayers {
			b.WriteString(" (no layers: next build is cold)")
		}
		b.WriteString("\n")
		names := make([]string, 0, len(nbd.Outputs))
		for n := range nbd.Outputs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "- output `%s`: `%s`\n", n, nbd.Outputs[n])
		}
	}
	return b.String()
}

// auditHover lists what a failed audit of the result found.
func auditHover(b *strings.Builder, r *results.Record) {
	if r == nil || r.Audit == nil || r.Audit.State != results.AuditFailed {
		return
	}
	a := r.Audit
	b.WriteString("- **AUDIT FAILED**: a clean build differs from the layered result, which it replaced; the stale layers are never reused\n")
	for _, f := range a.Files[:min(len(a.Files), 5)] {
		fmt.Fprintf(b, "  - `%s/%s`: %s\n", f.Output, f.Path, f.Why)
	}
	if len(a.Phases) > 0 {
		fmt.Fprintf(b, "  - phases whose layer differs: %s\n", strings.Join(a.Phases, " "))
	}
	if len(a.Attrs) > 0 {
		fmt.Fprintf(b, "  - attributes changed between the chains: %s\n", strings.Join(a.Attrs, " "))
	}
}

func lineRange(f *syntax.File, s syntax.Span) protocol.Range {
	p := position(f, s.Start)
	return protocol.Range{Start: p, End: p}
}

func position(f *syntax.File, offset int) protocol.Position {
	p := f.Position(offset)
	return protocol.Position{Line: uint32(p.Line), Character: uint32(p.UTF16Column)}
}

func seconds(d time.Duration) string {
	if d < 100*time.Millisecond {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// age is how long ago, as lenses and hovers say it (3 s, 5 min, 2 h, 4 days).
func age(d time.Duration) string {
	return events.Age(d, events.AgeUnits{" s", " min", " h", " days"})
}

// ShortID is a layer id as hovers and messages show it: its first 12
// characters.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// stateAfterBuild is the engine state the summary lens shows beside the
// result's state once a build is over (a fallback, a rewrite, a warning):
// none when the result's state is newer (the cache's record outlives the
// server's memory and follows the background work).
func stateAfterBuild(p *target.Package) *target.EngineState {
	st, r := p.State, p.Result
	if st == nil || (r != nil && r.Updated.After(st.At)) {
		return nil
	}
	return st
}

// backgroundText says that background work runs on the package's chain
// while it does ("" when none does, or when the pending result's state
// says so already).
func backgroundText(p *target.Package) string {
	if p.Background == nil || (p.Result != nil && p.Result.State.Pending()) {
		return ""
	}
	return "◔ learning the output-path map in the background"
}

// resultSummary is the state of the package's newest result, for the
// summary lens ("" when there is nothing to say).
func resultSummary(r *results.Record) string {
	if r == nil {
		return ""
	}
	if r.Audit != nil && r.Audit.State == results.AuditFailed {
		return "⚠ AUDIT: stale layers found (" + strings.Join(r.Audit.Phases, ", ") + "); result replaced by a clean build"
	}
	switch r.State {
	case events.StateProvisional:
		return "◐ result provisional (verifying in the background)"
	case events.StateVerifying:
		return "◐ result verifying"
	case events.StateVerified:
		return "✓ result verified"
	case events.StateReplaced:
		return "✓ result replaced by an exact rebuild"
	case events.StateUnverified:
		return "⚠ result not verified"
	}
	return ""
}

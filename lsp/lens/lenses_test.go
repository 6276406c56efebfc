package lens

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/lsp/analysis"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/runner"
)

const pkgSrc = `{ stdenv, fetchurl }:
stdenv.mkDerivation {
  pname = "demo";
  version = "1.0";
  src = ./src;
  configureFlags = "--enable-x";
  doCheck = true;
  postInstall = ''
    echo hi > $out/hi
  '';
  preFixup = "echo fixing";
}
`

var phases = []string{"unpackPhase", "patchPhase", "configurePhase", "buildPhase", "checkPhase", "installPhase", "fixupPhase"}

// planFor is a plan as the runner would give it: the attributes placed
// as the runner places them, the first `cached` phases cached.
func planFor(cached int) *planner.Plan {
	owned := map[string][]string{
		"unpackPhase":    {"name", "pname", "src", "stdenv", "version"},
		"configurePhase": {"configureFlags"},
		"checkPhase":     {"doCheck"},
		"installPhase":   {"postInstall"},
		"fixupPhase":     {"preFixup"},
	}
	p := &planner.Plan{Name: "demo-1.0", Drv: "/nix/store/x-demo-1.0.drv"}
	for i, name := range phases {
		pp := planner.PhasePlan{Name: name, Status: planner.StatusRun, Attrs: owned[name]}
		if i < cached {
			pp.Status = planner.StatusCached
			pp.Layer = &planner.LayerInfo{ID: fmt.Sprintf("%064d", i), Created: time.Unix(1000, 0), Duration: 400 * time.Millisecond, Size: 2048}
		} else if i == cached {
			pp.Reason, pp.Changed = "postInstall changed", []string{"postInstall"}
		} else {
			pp.Reason, pp.Follows = "follows "+phases[cached], phases[cached]
		}
		p.Phases = append(p.Phases, pp)
	}
	return p
}

func evalOf(src string, plan *planner.Plan) *target.Evaluation {
	d := nixexpr.FindDerivations(parser.Parse([]byte(src)))[0]
	return &target.Evaluation{Packages: []*target.Package{{
		DrvPath: plan.Drv, Name: "demo-1.0", Pname: "demo", Plan: plan, Texts: target.AttrTexts(d),
		Env: map[string]string{"pname": "demo", "configureFlags": "--enable-x", "doCheck": "1", "postInstall": "echo hi > $out/hi\n", "preFixup": "echo fixing"},
	}}}
}

// titles maps "attribute line text" → status lens title.
func titles(t *testing.T, src string, in LensInput) map[string]string {
	t.Helper()
	in.File = parser.Parse([]byte(src))
	in.URI = "file:///w/pkg.nix"
	out := map[string]string{}
	lines := strings.Split(src, "\n")
	for _, l := range CodeLenses(in) {
		if strings.HasPrefix(l.Command.Title, "▶ rebuild") {
			continue
		}
		key := strings.TrimSpace(lines[l.Range.Start.Line])
		if i := strings.IndexAny(key, " ="); i > 0 {
			key = key[:i]
		}
		if _, ok := out[key]; !ok {
			out[key] = l.Command.Title
		}
	}
	return out
}

func TestLensesFromPlan(t *testing.T) {
	got := titles(t, pkgSrc, LensInput{Eval: evalOf(pkgSrc, planFor(5))})
	want := map[string]string{
		"stdenv.mkDerivation": "5/7 phases cached · ▶ build",
		"src":                 "✓ cached · 0.4 s",
		"configureFlags":      "✓ cached · 0.4 s",
		"doCheck":             "✓ cached · 0.4 s",
		"postInstall":         "✗ invalidated by postInstall",
		"preFixup":            "✗ invalidated by postInstall",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lenses\n got %v\nwant %v", got, want)
	}
	// pname and version are not phase attributes: no lens.
	for _, k := range []string{"pname", "version"} {
		if _, ok := got[k]; ok {
			t.Errorf("lens on %s", k)
		}
	}
}

func TestRebuildLensArguments(t *testing.T) {
	f := parser.Parse([]byte(pkgSrc))
	ls := CodeLenses(LensInput{URI: "file:///w/pkg.nix", File: f, Eval: evalOf(pkgSrc, planFor(7))})
	var rebuild []string
	for _, l := range ls {
		if l.Command.Command == CmdRebuildFrom {
			a := l.Command.Arguments[0].(CommandArgs)
			rebuild = append(rebuild, l.Command.Title+"|"+a.Phase+"|"+string(a.URI))
		}
	}
	sort.Strings(rebuild)
	want := []string{
		"▶ rebuild from checkPhase|checkPhase|file:///w/pkg.nix",
		"▶ rebuild from configurePhase|configurePhase|file:///w/pkg.nix",
		"▶ rebuild from fixupPhase|fixupPhase|file:///w/pkg.nix",
		"▶ rebuild from installPhase|installPhase|file:///w/pkg.nix",
		"▶ rebuild from unpackPhase|unpackPhase|file:///w/pkg.nix",
	}
	if strings.Join(rebuild, "\n") != strings.Join(want, "\n") {
		t.Errorf("rebuild lenses:\n%s", strings.Join(rebuild, "\n"))
	}
}

func TestUnsavedEditInvalidatesFromItsPhase(t *testing.T) {
	ev := evalOf(pkgSrc, planFor(7))
	for _, tc := range []struct {
		name, edited string
		want         map[string]string
	}{
		{"postInstall edit", strings.Replace(pkgSrc, "echo hi", "echo hello", 1), map[string]string{
			"configureFlags": "✓ cached · 0.4 s", "postInstall": "✗ invalidated by postInstall", "preFixup": "✗ invalidated by postInstall",
			"stdenv.mkDerivation": "5/7 phases cached · ▶ build"}},
		{"configureFlags edit", strings.Replace(pkgSrc, "--enable-x", "--enable-y", 1), map[string]string{
			"src": "✓ cached · 0.4 s", "configureFlags": "✗ invalidated by configureFlags", "doCheck": "✗ invalidated by configureFlags"}},
		{"reformatted, same value", strings.Replace(pkgSrc, `"--enable-x"`, `''--enable-x''`, 1), map[string]string{
			"configureFlags": "✓ cached · 0.4 s", "stdenv.mkDerivation": "7/7 phases cached · ▶ build"}},
		{"boolean same value", strings.Replace(pkgSrc, "doCheck = true", "doCheck =  true", 1), map[string]string{
			"doCheck": "✓ cached · 0.4 s"}},
		{"new hook placed by phaserules", strings.Replace(pkgSrc, "  doCheck", "  preBuild = \"make gen\";\n  doCheck", 1), map[string]string{
			"configureFlags": "✓ cached · 0.4 s", "preBuild": "✗ invalidated by preBuild", "doCheck": "✗ invalidated by preBuild"}},
		{"removed attribute", strings.Replace(pkgSrc, "  preFixup = \"echo fixing\";\n", "", 1), map[string]string{
			"postInstall": "✓ cached · 0.4 s", "stdenv.mkDerivation": "6/7 phases cached · ▶ build"}},
	} {
		got := titles(t, tc.edited, LensInput{Eval: ev})
		for k, w := range tc.want {
			if got[k] != w {
				t.Errorf("%s: %s lens %q, want %q (all: %v)", tc.name, k, got[k], w, got)
			}
		}
	}
}

func TestLensesWithoutPlan(t *testing.T) {
	got := titles(t, pkgSrc, LensInput{Pending: "… evaluating"})
	if got["postInstall"] != "… evaluating" || got["stdenv.mkDerivation"] != "… evaluating" {
		t.Errorf("pending: %v", got)
	}
	got = titles(t, pkgSrc, LensInput{Eval: &target.Evaluation{Err: "error: undefined variable 'foo'\n at «stdin»:3:5"}})
	if got["postInstall"] != "⚠ not evaluated" || !strings.HasPrefix(got["stdenv.mkDerivation"], "⚠ not evaluated: error: undefined variable") {
		t.Errorf("eval error: %v", got)
	}
}

// A buffer broken mid-edit (unclosed brace, half-typed string) keeps its
// lenses on the intact attributes.
func TestBrokenBufferKeepsLenses(t *testing.T) {
	broken := `{ stdenv }:
stdenv.mkDerivation {
  pname = "demo";
  src = ./src;
  configureFlags = "--enable-x";
  doCheck = true;
  postInstall = "echo half
  preFixup = ''
`
	ev := evalOf(pkgSrc, planFor(7))
	got := titles(t, broken, LensInput{Eval: ev})
	for _, k := range []string{"src", "configureFlags"} {
		if !strings.HasPrefix(got[k], "✓ cached") {
			t.Errorf("%s: %q (all %v)", k, got[k], got)
		}
	}
	if !strings.HasPrefix(got["postInstall"], "✗ invalidated by postInstall") {
		t.Errorf("half-typed postInstall: %q (all %v)", got["postInstall"], got)
	}
	// Garbage never panics and gives no lens.
	for _, src := range []string{"", "{", "''", "mkDerivation {", "x: y: mkDerivation (f: { a = ", "\x00\xff"} {
		CodeLenses(LensInput{File: parser.Parse([]byte(src)), Eval: ev})
		Hover(LensInput{File: parser.Parse([]byte(src)), Eval: ev}, 3, time.Now())
	}
}

func TestHover(t *testing.T) {
	ev := evalOf(pkgSrc, planFor(7))
	f := parser.Parse([]byte(pkgSrc))
	off := strings.Index(pkgSrc, "postInstall") + 2
	h := Hover(LensInput{URI: "file:///w/pkg.nix", File: f, Eval: ev}, off, time.Unix(1000, 0).Add(3*time.Minute))
	if h == nil {
		t.Fatal("no hover on postInstall")
	}
	for _, want := range []string{"**postInstall** → phase `installPhase` (a hook of installPhase, which the stdenv runs there)", "✓ cached · 0.4 s — phase 6 of 7",
		"layer `000000000000` · built 3 min ago · took 0.4 s · 2.0 KiB", "key attributes: postInstall"} {
		if !strings.Contains(h.Contents.Value, want) {
			t.Errorf("hover lacks %q:\n%s", want, h.Contents.Value)
		}
	}
	if h := Hover(LensInput{File: f, Eval: ev}, strings.Index(pkgSrc, "pname"), time.Now()); h != nil {
		t.Errorf("hover on pname: %v", h.Contents.Value)
	}

	// A failed phase shows the log tail.
	plan := planFor(5)
	ev = evalOf(pkgSrc, plan)
	ev.Packages[0].Failure = &runner.PhaseError{Phase: "installPhase", Exit: 2, LogTail: "make: *** no rule\nerror here", Layer: "abcdef1234567890"}
	h = Hover(LensInput{File: f, Eval: ev}, off, time.Now())
	for _, want := range []string{"✗ failed · exit 2", "exit code 2", "error here", "`abcdef123456`"} {
		if !strings.Contains(h.Contents.Value, want) {
			t.Errorf("failed hover lacks %q:\n%s", want, h.Contents.Value)
		}
	}
	v := analysis.Analyze(f, ev)[0]
	if s := analysis.FailureTarget(v, "installPhase"); f.Text(s) != "postInstall" {
		t.Errorf("failure reported on %q", f.Text(s))
	}
}

// An attribute the package's own postInstall names keys from the first
// phase all the same: its lens sits on that phase and the hover says the
// rule the runner placed it by.
func TestHoverPlacementRule(t *testing.T) {
	src := strings.Replace(pkgSrc, "  doCheck = true;\n", "  doCheck = true;\n  GREETING = \"hi\";\n", 1)
	plan := planFor(7)
	plan.Phases[0].Attrs = append(plan.Phases[0].Attrs, "GREETING")
	plan.Placements = map[string]phaserules.Placement{"GREETING": {Phase: "unpackPhase", Rule: phaserules.RuleAny, NamedBy: "installPhase",
		Why: phaserules.FromFirstPhase + "programs may read any attribute (the package's own code of installPhase naming it does not make it the stdenv's)"}}
	ev := evalOf(src, plan)
	f := parser.Parse([]byte(src))
	h := Hover(LensInput{File: f, Eval: ev}, strings.Index(src, "GREETING")+1, time.Now())
	if h == nil {
		t.Fatal("no hover on GREETING")
	}
	if want := "**GREETING** → phase `unpackPhase` (read from the first phase on: programs may read any attribute"; !strings.Contains(h.Contents.Value, want) {
		t.Errorf("hover lacks %q:\n%s", want, h.Contents.Value)
	}
	if got := titles(t, src, LensInput{Eval: ev}); !strings.HasPrefix(got["GREETING"], "✓ cached") {
		t.Errorf("GREETING's lens: %q (all %v)", got["GREETING"], got)
	}
}

func TestEvalDiagnosticPosition(t *testing.T) {
	d := EvalDiagnostic("error: undefined variable 'foo'\n\n       at «stdin»:3:5:", "/w/x.nix")
	if d.Range.Start != (protocol.Position{Line: 2, Character: 4}) {
		t.Errorf("position %+v", d.Range.Start)
	}
	d = EvalDiagnostic("error: x\n at /w/x.nix:10:1:", "/w/x.nix")
	if d.Range.Start.Line != 9 {
		t.Errorf("position %+v", d.Range.Start)
	}
}

// The lenses of a running build, as its events arrive: the summary says
// how far it is and what the engine does, the running phase counts its
// time against the estimate, finished phases are ✓, the rest queued.
func TestLiveLensTitles(t *testing.T) {
	plan := planFor(2) // unpack, patch cached; configure… must run
	plan.Phases[3].Estimate = 23 * time.Second
	ev := evalOf(pkgSrc, plan)
	t0 := time.Unix(5000, 0)
	r := NewRunning(t0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	in := func(now time.Time) LensInput { return LensInput{Eval: ev, Running: r, Now: now} }

	got := titles(t, pkgSrc, in(at(2)))
	if got["stdenv.mkDerivation"] != "⟳ evaluating · 2 s" || got["postInstall"] != "◌ queued" || got["src"] != "✓ cached · 0.4 s" {
		t.Errorf("while evaluating: %v", got)
	}
	r = r.With(plan.Drv)
	r = r.Apply(events.Event{Kind: events.EventWait, Message: "waiting for another build of the same derivation to finish"}, at(3))
	if s := titles(t, pkgSrc, in(at(4)))["stdenv.mkDerivation"]; s != "⟳ planning · 4 s · ⏸ waiting for another build of the same derivation to finish" {
		t.Errorf("waiting: %q", s)
	}
	for i, ph := range phases[:2] {
		r = r.Apply(events.Event{Kind: events.EventCached, Phase: ph, Index: i + 1, Total: 7, Elapsed: 400 * time.Millisecond}, at(5))
	}
	r = r.Apply(events.Event{Kind: events.EventStart, Phase: "configurePhase", Index: 3, Total: 7}, at(5))
	r = r.Apply(events.Event{Kind: events.EventDone, Phase: "configurePhase", Index: 3, Total: 7, Elapsed: 1100 * time.Millisecond}, at(6))
	r = r.Apply(events.Event{Kind: events.EventStart, Phase: "buildPhase", Index: 4, Total: 7, Estimate: 23 * time.Second}, at(6))
	got = titles(t, pkgSrc, in(at(18)))
	want := map[string]string{
		"stdenv.mkDerivation": "⟳ 3/7 phases done · buildPhase 12 s of ~23 s",
		"src":                 "✓ cached · 0.4 s",
		"configureFlags":      "✓ done · 1.1 s",
		"postInstall":         "◌ queued",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("mid-build %s: %q, want %q (all %v)", k, got[k], w, got)
		}
	}
	// No rebuild lenses while it runs; the summary cancels.
	for _, l := range CodeLenses(LensInput{File: parser.Parse([]byte(pkgSrc)), Eval: ev, Running: r, Now: at(18)}) {
		if strings.HasPrefix(l.Command.Title, "▶ rebuild") {
			t.Errorf("a rebuild lens during the build: %q", l.Command.Title)
		}
		if strings.HasPrefix(l.Command.Title, "⟳") && l.Command.Command != CmdCancel {
			t.Errorf("the summary runs %q", l.Command.Command)
		}
	}
	r = r.Apply(events.Event{Kind: events.EventFailed, Phase: "buildPhase", Index: 4, Total: 7, Exit: 2}, at(20))
	if s := titles(t, pkgSrc, in(at(20)))["doCheck"]; s != "◌ queued" {
		t.Errorf("after the failure event, a later phase: %q", s)
	}
	// After the build, one summary: the result's state first, background
	// work while it runs, then an engine state newer than the result's record.
	pkg := ev.Packages[0]
	pkg.Result = &results.Record{Drv: plan.Drv, State: events.StateVerified, Updated: at(25)}
	pkg.Background = &results.Job{Drv: plan.Drv, PID: 7}
	pkg.State = target.StateOf(events.Event{Kind: events.EventWarning, Message: "pushing to the layer cache failed (registry down)"}, at(30))
	got = titles(t, pkgSrc, LensInput{Eval: ev, Now: at(90)})
	if s := got["stdenv.mkDerivation"]; s != "✓ result verified · 2/7 phases cached · ◔ learning the output-path map in the background · warning: pushing to the layer cache failed · 1 min ago · ▶ build" {
		t.Errorf("states after the build: %q", s)
	}
	// A provisional result says itself that the background verifies it;
	// an engine state older than the record is gone.
	pkg.Result = &results.Record{Drv: plan.Drv, State: events.StateProvisional, Updated: at(40)}
	got = titles(t, pkgSrc, LensInput{Eval: ev, Now: at(90)})
	if s := got["stdenv.mkDerivation"]; s != "◐ result provisional (verifying in the background) · 2/7 phases cached · ▶ build" {
		t.Errorf("a provisional result being verified: %q", s)
	}
	pkg.Background, pkg.Result = nil, &results.Record{Drv: plan.Drv, State: events.StateVerified, Updated: at(80)}
	got = titles(t, pkgSrc, LensInput{Eval: ev, Now: at(90)})
	if s := got["stdenv.mkDerivation"]; s != "✓ result verified · 2/7 phases cached · ▶ build" {
		t.Errorf("once verified: %q", s)
	}
	// An audit that found stale layers says so first, and the hover lists
	// what it found.
	pkg.Result = &results.Record{Drv: plan.Drv, State: events.StateReplaced, Updated: at(85), Audit: &results.Audit{
		State: results.AuditFailed, Phases: []string{"buildPhase", "installPhase"}, Attrs: []string{"GREETING"},
		Files: []results.Difference{{Output: "out", Path: "bin/hello", Why: "content differs from byte 12"}}}}
	got = titles(t, pkgSrc, LensInput{Eval: ev, Now: at(90)})
	if s := got["stdenv.mkDerivation"]; s != "⚠ AUDIT: stale layers found (buildPhase, installPhase); result replaced by a clean build · 2/7 phases cached · ▶ build" {
		t.Errorf("a failed audit: %q", s)
	}
	hover := summaryHover(analysis.DerivView{Pkg: pkg}, at(90))
	for _, want := range []string{"AUDIT FAILED", "`out/bin/hello`", "buildPhase installPhase", "GREETING"} {
		if !strings.Contains(hover, want) {
			t.Errorf("the hover after a failed audit lacks %q:\n%s", want, hover)
		}
	}
}

func TestLiveInterval(t *testing.T) {
	now := time.Unix(10000, 0)
	for d, want := range map[time.Duration]string{0: "0 s", 59 * time.Second: "59 s", 77 * time.Second: "1 min 15 s", 10*time.Minute + 4*time.Second: "10 min 0 s"} {
		if got := elapsed(d); got != want {
			t.Errorf("elapsed(%s) = %q, want %q", d, got, want)
		}
	}
	fresh := &Running{Started: now.Add(-time.Hour), Phase: "buildPhase", PhaseStarted: now.Add(-10 * time.Second)}
	long := &Running{Started: now.Add(-time.Hour), Phase: "buildPhase", PhaseStarted: now.Add(-2 * time.Minute)}
	if got := LiveInterval([]*Running{long}, now, time.Second); got != 5*time.Second {
		t.Errorf("a phase running for minutes: every %s", got)
	}
	if got := LiveInterval([]*Running{long, fresh}, now, time.Second); got != time.Second {
		t.Errorf("a phase that just started: every %s", got)
	}
}

package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/runner"
)

// Issue 12: packages built the way nixpkgs' Linux stdenv builds them
// (testdata/linux-hooks): -g -O2 with -frandom-seed from $out, so every
// object's debug info differs beyond what a byte rewrite follows; stripped
// in fixup; a configure whose config.log holds random temporary names.

// gnuhello is the fixture with few files (the objects' debug strings
// differ between any two seeds all the same).
func gnuhello(salt string, args ...string) fixture {
	return fixture{attr: "gnuhello", args: append([]string{"--arg", "nfiles", "8", "--argstr", "salt", salt}, args...)}
}

func postInstall(f fixture, code string) fixture {
	return f.with("--argstr", "postInstallExtra", code)
}

func (e *env) learn(f fixture) string {
	e.t.Helper()
	r := e.nixlayer(append([]string{"learn"}, f.cli()...)...)
	if r.Err != nil {
		e.t.Fatalf("nixlayer learn: %v\n%s", r.Err, r.Stderr)
	}
	return r.Stderr
}

func findingsByFile(ex *runner.Exactness) map[string]runner.Finding {
	m := map[string]runner.Finding{}
	for _, f := range ex.Findings {
		m[f.File] = f
	}
	return m
}

func inStore(out string) bool { return strings.HasPrefix(out, nixstore.StoreDir()+"/") }

// verdictOf is the build's verdict event on its outputs; it fails the test
// when there is none, or when a message is not one short line.
func verdictOf(t *testing.T, stderr string) runner.Event {
	t.Helper()
	evs := buildEvents(stderr)
	for _, ev := range evs {
		if len(ev.Message) > 600 && ev.Kind != runner.EventFailed {
			t.Fatalf("a %s event of %d characters: reasons must stay short:\n%s", ev.Kind, len(ev.Message), ev.Message)
		}
	}
	ev := eventOf(evs, runner.EventVerdict)
	if ev == nil {
		t.Fatalf("no verdict on the outputs:\n%s", stderr)
	}
	return *ev
}

// Done when 1 (CLI): the debug info that -frandom-seed makes unexplainable
// is stripped and no build-id covers it, and config.log's random names
// reach nothing: postInstall edits, one after the other on one cache,
// resume at installPhase, are registered and equal Nix's own builds.
func TestSeededDebugInfoResumesExactly(t *testing.T) {
	e := newEnv(t)
	f := gnuhello(e2etest.Salt())
	e.mustBuild(f)
	e.learn(f) // what the background learner does after a cold build
	for i, code := range []string{"echo edited > $out/edited", "echo edited again > $out/edited"} {
		edited := postInstall(f, code)
		p := e.plan(edited)
		if p.Exactness == nil || !p.Exactness.Exact || p.Exactness.Rule != runner.RuleUnreachable {
			t.Fatalf("edit %d: plan predicts %+v, want exact by rule %s", i, p.Exactness, runner.RuleUnreachable)
		}
		byFile := findingsByFile(p.Exactness)
		if cl := byFile["build/hello-1/config.log"]; cl.Phase != "configurePhase" || cl.Rule != runner.RuleUnreachable {
			t.Fatalf("edit %d: config.log's random names: %+v, want made by configurePhase, reaching nothing", i, cl)
		}
		if o := byFile["build/hello-1/hello"]; o.Phase != "buildPhase" || o.Rule != runner.RuleUnreachable {
			t.Fatalf("edit %d: the linked program's seeded debug info: %+v, want made by buildPhase, reaching nothing", i, o)
		}
		outs, stderr := e.mustBuild(edited)
		if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "installPhase" {
			t.Fatalf("edit %d: resume ran %v\n%s", i, ran, stderr)
		}
		if v := verdictOf(t, stderr); !v.Exact || !strings.Contains(v.Message, "unreachable") {
			t.Fatalf("edit %d: resume not judged exact by rule unreachable: %+v", i, v)
		}
		for _, o := range outs {
			if !inStore(o) {
				t.Fatalf("edit %d: %s not registered", i, o)
			}
		}
		e.nixBuild(edited, "--check")
	}
}

// Done when 2 (CLI): with build-ids (separateDebugInfo) the id of the
// installed program is computed over the seeded debug info: the resume is
// inexact, named and kept out of the store. The plan of the next edit
// predicts it from that build; --exact keeps configure and reruns the
// compile at once, equal to Nix's build.
func TestBuildIDOverSeededDebugInfoRebuildsFromCompile(t *testing.T) {
	e := newEnv(t)
	f := gnuhello(e2etest.Salt(), "--arg", "separateDebugInfo", "true")
	e.mustBuild(f)
	e.learn(f) // what the background learner does after a cold build
	outs, stderr := e.mustBuild(postInstall(f, "echo edited > $out/edited"))
	if v := verdictOf(t, stderr); v.Exact || !strings.Contains(v.Message, "build-id: ") || !strings.Contains(v.Message, "build/hello-1/hello → out/bin/hello") {
		t.Fatalf("the build-id over seeded debug info is not named: %+v", v)
	}
	if !strings.Contains(stderr, "PROVISIONAL") {
		t.Fatalf("the inexact result is not marked:\n%s", stderr)
	}
	for _, o := range outs {
		if inStore(o) {
			t.Fatalf("inexact result %s reached the store", o)
		}
	}
	edited := postInstall(f, "echo edited again > $out/edited")
	p := e.plan(edited)
	if p.Exactness == nil || p.Exactness.Exact || p.Exactness.Rule != rewrite.RuleBuildID || p.Exactness.RebuildFrom != "buildPhase" {
		t.Fatalf("the plan does not predict the fallback to the compile: %+v", p.Exactness)
	}
	outs, stderr = e.mustBuild(edited, "--exact")
	if fb := eventOf(buildEvents(stderr), runner.EventFallback); fb == nil || !strings.Contains(fb.Message, "rebuilding from buildPhase") {
		t.Fatalf("--exact did not fall back to the compile:\n%s", stderr)
	}
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "buildPhase" || slices.Contains(ran, "configurePhase") {
		t.Fatalf("--exact ran %v, want a rebuild from buildPhase with configure reused\n%s", ran, stderr)
	}
	for _, o := range outs {
		if !inStore(o) {
			t.Fatalf("--exact result %s not registered", o)
		}
	}
	e.nixBuild(edited, "--check")
}

// Done when 3: unexplained, path-caused bytes that reach an output (the
// binary installed unstripped, as it was linked) make the result inexact,
// named by file and rule, and it is never registered.
func TestUnexplainedBytesReachingAnOutputAreNeverRegistered(t *testing.T) {
	e := newEnv(t)
	f := gnuhello(e2etest.Salt(), "--arg", "dontStrip", "true")
	e.mustBuild(f)
	e.learn(f)
	edited := postInstall(f, "echo edited > $out/edited")
	outs, stderr := e.mustBuild(edited)
	if v := verdictOf(t, stderr); v.Exact || !strings.Contains(v.Message, "installed-as-is: ") || !strings.Contains(v.Message, "build/hello-1/hello → out/bin/hello") {
		t.Fatalf("the installed unstripped program is not named: %+v", v)
	}
	if !strings.Contains(stderr, "PROVISIONAL") {
		t.Fatalf("the inexact result is not marked:\n%s", stderr)
	}
	drv := e2etest.Lines(e2etest.Run(e.dir, nil, "nix-instantiate", edited.cli()[1:]...).Stdout)[0]
	for _, o := range e2etest.Lines(e2etest.Run(e.dir, nil, "nix-store", "-q", "--outputs", drv).Stdout) {
		if ok, _ := nixstore.IsValid(t.Context(), o); ok {
			t.Fatalf("%s was registered although its resume is inexact", o)
		}
	}
	if inStore(outs[0]) {
		t.Fatalf("inexact result %s reached the store", outs[0])
	}
	// verify names the rule and every file; Nix's own build differs.
	r := e.nixlayer(append([]string{"verify", "-Q", "--json"}, edited.cli()...)...)
	var v runner.Verification
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	if v.Exactness == nil || v.Exactness.Exact || v.Exactness.Rule != rewrite.RuleInstalled || v.Exactness.RebuildFrom != "buildPhase" {
		t.Fatalf("verify's verdict: %+v", v.Exactness)
	}
	if f := findingsByFile(v.Exactness)["build/hello-1/hello"]; f.Rule != rewrite.RuleInstalled || f.Output != "out/bin/hello" {
		t.Fatalf("verify does not name the installed program: %+v", f)
	}
	if v.Identical {
		t.Fatal("Nix's build equals an inexact resume: the fixture no longer tests this")
	}
}

// Bytes that differ between any two builds, paths or not, are not a path
// dependence: config.log installed into $out reaches an output, the
// background learner reruns configure with the same paths, sees its random
// names change again and the resume is exact (the package itself is not
// deterministic, so nix-build --check cannot compare it).
func TestNondeterministicBytesAreNotPathDependence(t *testing.T) {
	e := newEnv(t)
	f := postInstall(gnuhello(e2etest.Salt()), "cp config.log $out/config.log")
	e.mustBuild(f)
	if learned := e.learn(f); !strings.Contains(learned, "configurePhase again with the same paths") {
		t.Fatalf("the learner did not rerun configure to tell nondeterminism apart:\n%s", learned)
	}
	edited := postInstall(f, "cp config.log $out/config.log; echo edited > $out/edited")
	p := e.plan(edited)
	if cl := findingsByFile(p.Exactness)["build/hello-1/config.log"]; cl.Cause != rewrite.CauseNondeterministic || cl.Rule != runner.RuleNondeterministic {
		t.Fatalf("config.log: %+v, want nondeterministic", cl)
	}
	outs, stderr := e.mustBuild(edited)
	if v := verdictOf(t, stderr); !v.Exact || !strings.Contains(v.Message, "nondeterministic") || !inStore(outs[0]) {
		t.Fatalf("nondeterministic bytes made the resume inexact: %+v\n%v", v, outs)
	}
}

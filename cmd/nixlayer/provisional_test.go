package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/runner"
)

// Issue 13: nobody waits for learning. These tests run with the background
// work on, as users have it, and wait for the results' states with a
// bounded poll of `nixlayer status --json`.

// learnOn is the environment of a nixlayer run whose background work runs.
var learnOn = []string{"NIXLAYER_BACKGROUND_LEARN=1"}

// tiny is hello with few, small files: the background learner builds
// every chain a second time.
func tiny(salt string) fixture {
	return fixture{attr: "hello", args: []string{"--arg", "nfiles", "6", "--arg", "funcsPerFile", "4", "--argstr", "salt", salt}}
}

// build builds f with the background work on, a result link in the test
// directory and JSON progress; it returns the output path and the events.
func (e *env) build(f fixture, link string, extra ...string) (string, []runner.Event, string) {
	e.t.Helper()
	args := append([]string{"build", "--cache", e.cache, "-Q", "--progress=json", "-o", filepath.Join(e.dir, link)}, extra...)
	r := e2etest.Run(e.dir, learnOn, nixlayerBin, append(args, f.cli()...)...)
	if r.Err != nil {
		e.t.Fatalf("nixlayer build %v: %v\n%s", f.cli(), r.Err, r.Stderr)
	}
	outs := e2etest.Lines(r.Stdout)
	return outs[len(outs)-1], buildEvents(r.Stderr), r.Stderr
}

// status reads `nixlayer status --json`.
func (e *env) status() statusReport {
	e.t.Helper()
	r := e.nixlayer("status", "--json")
	if r.Err != nil {
		e.t.Fatalf("nixlayer status: %v\n%s", r.Err, r.Stderr)
	}
	var st statusReport
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, r.Stdout)
	}
	return st
}

// settled waits (bounded) until no result is pending and no background
// work runs, and returns the records by derivation.
func (e *env) settled(limit time.Duration) map[string]*runner.ResultRecord {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := e.status()
		pending := len(st.Background) > 0
		for _, r := range st.Results {
			pending = pending || r.State.Pending()
		}
		if !pending {
			recs := map[string]*runner.ResultRecord{}
			for _, r := range st.Results {
				recs[r.Drv] = r
			}
			return recs
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(e.cache, "learn.log"))
			e.t.Fatalf("background work not done after %s: %+v\nlearn.log:\n%s", limit, st, log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (e *env) drvOf(f fixture) string {
	e.t.Helper()
	r := e2etest.Run(e.dir, nil, "nix-instantiate", f.cli()[1:]...)
	if r.Err != nil {
		e.t.Fatalf("nix-instantiate: %v\n%s", r.Err, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// stateOf is the state a build's events announced (verified when none).
func stateOf(evs []runner.Event) runner.ResultState {
	for _, k := range []runner.EventKind{runner.EventProvisional, runner.EventUnverified} {
		if ev := eventOf(evs, k); ev != nil {
			return ev.State
		}
	}
	return runner.StateVerified
}

// Done when 1: a build fails in installPhase; the fix, built at once,
// returns a provisional result without waiting for the learner; it
// equals nix-build's, and once verified it is registered (without a
// rebuild) and ./result points into the store.
func TestFixAfterFailedBuild(t *testing.T) {
	e := newEnv(t)
	base := tiny(e2etest.Salt())
	broken := base.with("--argstr", "postInstallExtra", "echo broken >&2; exit 1")
	r := e2etest.Run(e.dir, learnOn, nixlayerBin, append([]string{"build", "--cache", e.cache, "-Q"}, broken.cli()...)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "installPhase") || !strings.Contains(r.Stderr, "in the background") {
		t.Fatalf("the broken build did not fail in installPhase and learn in the background: %v\n%s", r.Err, r.Stderr)
	}
	fixed := base.with("--argstr", "postInstallExtra", "echo fixed > $out/fixed")
	out, evs, stderr := e.build(fixed, "result")
	if stateOf(evs) != runner.StateProvisional || inStore(out) || eventOf(evs, runner.EventLearn) != nil {
		t.Fatalf("the fix did not come at once as a provisional result (%s):\n%s", out, stderr)
	}
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "installPhase" {
		t.Fatalf("the fix ran %v, want from installPhase", ran)
	}
	e.sameAsNix(fixed, out) // by NAR hash, before it is registered
	rec := e.settled(5 * time.Minute)[e.drvOf(fixed)]
	if rec == nil || rec.State != runner.StateVerified || !strings.Contains(rec.Why, "without a rebuild") || !inStore(rec.Outputs["out"]) {
		t.Fatalf("the provisional fix was not verified without a rebuild: %+v", rec)
	}
	if target, _ := os.Readlink(filepath.Join(e.dir, "result")); target != rec.Outputs["out"] {
		t.Fatalf("./result points at %s, want the registered %s", target, rec.Outputs["out"])
	}
	if target, _ := os.Readlink(out); target != rec.Outputs["out"] {
		t.Fatalf("the provisional copy %s was not turned into a link to the store path", out)
	}
	e.nixBuild(fixed, "--check")
}

// Done when 2 (CLI): one cache, one editing session. The edit made the
// moment the cold build ends is provisional and becomes verified without
// a rebuild; every result ends registered and equal to nix-build --check;
// going back to the first version is instant.
func TestEditingSession(t *testing.T) {
	e := newEnv(t)
	base := tiny(e2etest.Salt())
	post1 := base.with("--argstr", "postInstallExtra", "echo one > $out/one")
	flags := post1.with("--argstr", "configureExtraFlags", "--with-greeting=Hi")
	post2 := flags.with("--argstr", "postInstallExtra", "echo two > $out/two")
	source := post2.with("--argstr", "srcVersion", "2")
	steps := []struct {
		name string
		f    fixture
		from string // the first phase that must run
	}{
		{"cold", base, "unpackPhase"},
		{"postInstall at once", post1, "installPhase"},
		{"configureFlags", flags, "configurePhase"},
		{"postInstall", post2, "installPhase"},
		{"source", source, "unpackPhase"},
	}
	states := map[string]runner.ResultState{}
	for _, s := range steps {
		out, evs, stderr := e.build(s.f, "result")
		if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != s.from {
			t.Fatalf("%s: ran %v, want from %s\n%s", s.name, ran, s.from, stderr)
		}
		if eventOf(evs, runner.EventLearn) != nil {
			t.Fatalf("%s: learned in the foreground:\n%s", s.name, stderr)
		}
		states[s.name] = stateOf(evs)
		t.Logf("%s: %s %s", s.name, states[s.name], out)
	}
	if states["postInstall at once"] != runner.StateProvisional {
		t.Fatalf("the edit right after the cold build was %s, want provisional", states["postInstall at once"])
	}
	recs := e.settled(8 * time.Minute)
	for _, s := range steps {
		rec := recs[e.drvOf(s.f)]
		if rec == nil || (rec.State != runner.StateVerified && rec.State != runner.StateReplaced) || !inStore(rec.Outputs["out"]) {
			t.Fatalf("%s: not registered: %+v", s.name, rec)
		}
		if s.name == "postInstall at once" && (rec.State != runner.StateVerified || !strings.Contains(rec.Why, "without a rebuild")) {
			t.Fatalf("the immediate edit was not verified without a rebuild: %+v", rec)
		}
		e.nixBuild(s.f, "--check")
	}
	// The first version again: its outputs are valid, nothing is prepared.
	out, evs, stderr := e.build(base, "result")
	if eventOf(evs, runner.EventPlan) != nil || !inStore(out) {
		t.Fatalf("going back to the first version planned a build:\n%s", stderr)
	}
	if target, _ := os.Readlink(filepath.Join(e.dir, "result")); target != out {
		t.Fatalf("./result points at %s, want %s", target, out)
	}
}

// Done when 3: the older layers of a chain come from a derivation with
// other output paths (configure onwards rebuilt after a configureFlags
// edit): the chain's map is learned exactly and a resume on it is
// registered.
func TestMixedDerivationChainLearnsExactly(t *testing.T) {
	e := newEnv(t)
	base := tiny(e2etest.Salt())
	e.mustBuild(base)
	e.learn(base)
	flags := base.with("--argstr", "configureExtraFlags", "--with-greeting=Hi")
	e.mustBuild(flags, "--exact") // unpack and patch rewritten from base's paths
	if learned := e.learn(flags); !strings.Contains(learned, "exact: true") {
		t.Fatalf("the mixed chain's map is not exact:\n%s", learned)
	}
	edited := flags.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
	if p := e.plan(edited); p.RewriteMap != "exact" {
		t.Fatalf("plan: the reused chain's map is %q, want exact", p.RewriteMap)
	}
	outs, stderr := e.mustBuild(edited)
	if !inStore(outs[0]) || stateOf(buildEvents(stderr)) != runner.StateVerified {
		t.Fatalf("the resume on the mixed chain was not registered (%s):\n%s", outs[0], stderr)
	}
	e.nixBuild(edited, "--check")
}

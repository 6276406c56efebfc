package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

var nixlayerBin string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(e2etest.Main(m, &nixlayerBin))
}

// fixture names a testdata package with its arguments.
type fixture struct {
	attr string
	args []string // --arg/--argstr pairs
}

func (f fixture) with(args ...string) fixture {
	return fixture{attr: f.attr, args: append(append([]string{}, f.args...), args...)}
}

func (f fixture) cli() []string {
	return append([]string{"-f", e2etest.Testdata(), "-A", f.attr}, f.args...)
}

func hello(salt string) fixture {
	return fixture{attr: "hello", args: []string{"--arg", "nfiles", "20", "--argstr", "salt", salt}}
}

type env struct {
	t     *testing.T
	dir   string
	cache string
}

func newEnv(t *testing.T) *env {
	e2etest.Require(t)
	return &env{t: t, dir: t.TempDir(), cache: t.TempDir()}
}

func (e *env) nixlayer(args ...string) e2etest.Result {
	e.t.Helper()
	return e2etest.Run(e.dir, nil, nixlayerBin, append([]string{args[0], "--cache", e.cache}, args[1:]...)...)
}

// mustBuild builds f; stderr holds the progress events as JSON lines
// (buildEvents decodes them).
func (e *env) mustBuild(f fixture, extra ...string) (outs []string, stderr string) {
	e.t.Helper()
	r := e.nixlayer(append(append([]string{"build", "-Q", "--progress=json"}, extra...), f.cli()...)...)
	if r.Err != nil {
		e.t.Fatalf("nixlayer build %v: %v\n%s", f.cli(), r.Err, r.Stderr)
	}
	return e2etest.Lines(r.Stdout), r.Stderr
}

func (e *env) plan(f fixture, extra ...string) *runner.Plan {
	e.t.Helper()
	r := e.nixlayer(append(append([]string{"plan", "--json"}, extra...), f.cli()...)...)
	if r.Err != nil {
		e.t.Fatalf("nixlayer plan: %v\n%s", r.Err, r.Stderr)
	}
	var p runner.Plan
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		e.t.Fatalf("plan --json: %v\n%s", err, r.Stdout)
	}
	return &p
}

// forget deletes a derivation's registered outputs (and the ./result link
// rooting them), so that building it again builds instead of giving them
// back as nix-build would.
func (e *env) forget(outs ...string) {
	e.t.Helper()
	os.Remove(filepath.Join(e.dir, "result"))
	if r := e2etest.Run(e.dir, nil, "nix-store", append([]string{"--delete"}, outs...)...); r.Err != nil {
		e.t.Fatalf("nix-store --delete: %v\n%s", r.Err, r.Stderr)
	}
}

// nixBuild builds with plain nix-build and returns the output paths.
func (e *env) nixBuild(f fixture, extra ...string) []string {
	e.t.Helper()
	args := append(append([]string{"--no-out-link"}, extra...), f.cli()[1:]...)
	r := e2etest.Run(e.dir, nil, "nix-build", args...)
	if r.Err != nil {
		e.t.Fatalf("nix-build %v: %v\n%s", args, r.Err, r.Stderr)
	}
	return e2etest.Lines(r.Stdout)
}

// sameAsNix checks a layered output against Nix's own build of f: a result
// registered in the store is rebuilt by `nix-build --check` (which fails on
// any difference); one kept in the cache is compared by NAR hash.
func (e *env) sameAsNix(f fixture, out string) {
	e.t.Helper()
	if strings.HasPrefix(out, nixstore.StoreDir()+"/") {
		e.nixBuild(f, "--check")
		return
	}
	want := e.nixBuild(f)
	if got, exp := narHash(e.t, out), narHash(e.t, want[0]); got != exp {
		e.t.Fatalf("layered output %s has NAR hash %s, nix-build's %s has %s", out, got, want[0], exp)
	}
}

func narHash(t *testing.T, path string) string {
	t.Helper()
	sum, _, err := nixstore.NARHash(path)
	if err != nil {
		t.Fatal(err)
	}
	return nixstore.FormatHash(sum)
}

// buildEvents decodes the progress events a build printed with
// --progress=json (other lines are skipped).
func buildEvents(stderr string) []runner.Event {
	var evs []runner.Event
	for _, l := range strings.Split(stderr, "\n") {
		var ev runner.Event
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &ev) == nil && ev.Kind != "" {
			evs = append(evs, ev)
		}
	}
	return evs
}

// eventOf is the first event of a kind, nil when there is none.
func eventOf(evs []runner.Event, kind runner.EventKind) *runner.Event {
	for i := range evs {
		if evs[i].Kind == kind {
			return &evs[i]
		}
	}
	return nil
}

// ranPhases lists the phases a build's progress events say it ran.
func ranPhases(stderr string) []string {
	var ran []string
	for _, ev := range buildEvents(stderr) {
		if ev.Kind == runner.EventStart {
			ran = append(ran, ev.Phase)
		}
	}
	return ran
}

// Done when 1: every fixture's layered output is bit-identical to Nix's own
// build of the same derivation (nix-build --check rebuilds and compares).
func TestFixturesEqualNixBuild(t *testing.T) {
	e := newEnv(t)
	salt := e2etest.Salt()
	for _, f := range []fixture{
		hello(salt),
		{attr: "multi", args: []string{"--argstr", "salt", salt}},
		{attr: "cmd", args: []string{"--argstr", "salt", salt}},
		{attr: "structured", args: []string{"--argstr", "salt", salt}},
		{attr: "custom", args: []string{"--argstr", "salt", salt}},
		// Records identity, environment, /etc, /dev, the store and the
		// network as the builder sees them: equal means the sandbox matches.
		{attr: "envprobe", args: []string{"--argstr", "salt", salt}},
		// passAsFile, in a phase and as nixpkgs' runCommand does it.
		{attr: "passfile", args: []string{"--argstr", "salt", salt}},
		{attr: "runcmd", args: []string{"--argstr", "salt", salt}},
		// A phase that exits the builder ends the build, as in Nix.
		{attr: "earlyexit", args: []string{"--argstr", "salt", salt}},
	} {
		t.Run(f.attr, func(t *testing.T) {
			outs, stderr := e.mustBuild(f)
			if !strings.Contains(stderr, "outputs registered in the Nix store") {
				t.Fatalf("cold build not delivered to the store:\n%s", stderr)
			}
			for _, o := range outs {
				if r := e2etest.Run(e.dir, nil, "nix-store", "--verify-path", o); r.Err != nil {
					t.Fatalf("verify %s: %s", o, r.Stderr)
				}
			}
			// Nix rebuilds the derivation itself and fails if its output differs.
			e.nixBuild(f, "--check")
		})
	}
}

// Registered outputs carry the references Nix would record.
func TestMultiOutputReferences(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "multi", args: []string{"--argstr", "salt", e2etest.Salt()}}
	outs, _ := e.mustBuild(f)
	var dev, lib string
	for _, o := range outs {
		switch {
		case strings.HasSuffix(o, "-dev"):
			dev = o
		case strings.HasSuffix(o, "-lib"):
			lib = o
		}
	}
	r := e2etest.Run(e.dir, nil, "nix-store", "-q", "--references", dev)
	if r.Err != nil || !strings.Contains(r.Stdout, lib) {
		t.Fatalf("references of %s = %q (%v), want %s", dev, r.Stdout, r.Err, lib)
	}
	if r := e2etest.Run(e.dir, nil, "nix-store", "-q", "--deriver", dev); !strings.HasSuffix(strings.TrimSpace(r.Stdout), ".drv") {
		t.Fatalf("deriver of %s = %q", dev, r.Stdout)
	}
	if _, err := os.Lstat(filepath.Join(e.dir, "result-dev")); err != nil {
		t.Fatalf("result-dev link: %v", err)
	}
}

func phaseStatus(p *runner.Plan) map[string]runner.PhasePlan {
	m := map[string]runner.PhasePlan{}
	for _, ph := range p.Phases {
		m[ph.Name] = ph
	}
	return m
}

// firstRun is the first phase a plan runs, with its reason.
func firstRun(p *runner.Plan) (string, string) {
	for _, ph := range p.Phases {
		if ph.Status == runner.StatusRun {
			return ph.Name, ph.Reason
		}
	}
	return "", ""
}

// Done when 2: an edit reruns exactly the phases it invalidates, the plan
// names the attribute, and the resumed output equals nix-build's.
func TestResumeAfterEdits(t *testing.T) {
	e := newEnv(t)
	base := hello(e2etest.Salt())
	e.mustBuild(base)

	cases := []struct {
		name      string
		edit      fixture
		extra     []string
		wantFirst string
		wantWhy   string
	}{
		{"postInstall", base.with("--argstr", "postInstallExtra", "echo post > $out/share/post"), nil, "installPhase", "postInstall"},
		{"installPhase", base.with("--argstr", "installExtra", "echo inst > $out/inst"), nil, "installPhase", "installPhase"},
		{"configureFlags", base.with("--argstr", "configureExtraFlags", "--with-greeting=Hi"), nil, "configurePhase", "configureFlags"},
		{"src", base.with("--argstr", "srcVersion", "2"), nil, "unpackPhase", "src"},
		{"strict", base.with("--argstr", "postInstallExtra", "echo strict > $out/s"), []string{"--strict"}, "unpackPhase", "postInstall"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := e.plan(c.edit, c.extra...)
			first, why := firstRun(p)
			if first != c.wantFirst || !strings.Contains(why, c.wantWhy) {
				t.Fatalf("plan runs from %s (%q), want %s because of %s", first, why, c.wantFirst, c.wantWhy)
			}
			outs, stderr := e.mustBuild(c.edit, c.extra...)
			ran := ranPhases(stderr)
			if len(ran) == 0 || ran[0] != c.wantFirst {
				t.Fatalf("build ran %v, want from %s", ran, c.wantFirst)
			}
			e.sameAsNix(c.edit, outs[0])
		})
	}
}

// Done when 3 (failure): the error names the phase, shows the log tail and
// says how to inspect the kept layer.
func TestFailedPhaseKeepsLayer(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "failing", args: []string{"--argstr", "salt", e2etest.Salt(), "--argstr", "failMessage", "boom-for-test"}}
	r := e.nixlayer(append([]string{"build", "-Q"}, f.cli()...)...)
	if r.Err == nil {
		t.Fatal("failing build succeeded")
	}
	for _, want := range []string{"failed in installPhase", "boom-for-test", "nixlayer shell --cache " + e.cache + " --at failed"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("error output lacks %q:\n%s", want, r.Stderr)
		}
	}
	st, err := layers.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, _ := st.List()
	failed := 0
	for _, l := range all {
		if l.Meta.Status == layers.StatusFailed && l.Meta.Phase == "installPhase" {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("want one failed installPhase layer, have %d", failed)
	}
	// The next build reruns only the failed phase.
	p := e.plan(f)
	if first, _ := firstRun(p); first != "installPhase" {
		t.Fatalf("after the failure the plan runs from %s", first)
	}
}

// Done when 3 (kill -9): an interrupted build leaves no layer that a later
// build could reuse, and the next build is correct.
func TestKill9MidPhase(t *testing.T) {
	e := newEnv(t)
	f := hello(e2etest.Salt()).with("--argstr", "preBuildExtra", "sleep 2")
	cmd := exec.Command(nixlayerBin, append([]string{"build", "--cache", e.cache}, f.cli()...)...)
	cmd.Dir = e.dir
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	var seen strings.Builder
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(seen.String(), "Running phase: buildPhase") {
		n, err := stderr.Read(buf)
		seen.Write(buf[:n])
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("build never reached buildPhase: %v\n%s", err, seen.String())
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	st, err := layers.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := st.List()
	running := 0
	for _, l := range all {
		if l.Meta.Status == layers.StatusRunning {
			running++
		}
	}
	st.Close()
	if running != 1 {
		t.Fatalf("want the interrupted layer marked running, found %d", running)
	}
	p := e.plan(f)
	if first, _ := firstRun(p); first != "buildPhase" {
		t.Fatalf("after kill -9 the plan runs from %s, want buildPhase", first)
	}
	outs, _ := e.mustBuild(f)
	st, _ = layers.Open(e.cache)
	all, _ = st.List()
	st.Close()
	for _, l := range all {
		if l.Meta.Status == layers.StatusRunning {
			t.Fatalf("stale layer %s survived the next build", l.ID)
		}
	}
	e.nixBuild(f, "--check")
	_ = outs
}

// Done when 3 (bad input): one-line errors that say what to do.
func TestBadInputErrors(t *testing.T) {
	e := newEnv(t)
	// A corrupt .drv in the store (unregistered, so Nix never sees it).
	bad := filepath.Join(nixstore.StoreDir(), "00000000000000000000000000000000-nixlayer-e2e-"+e2etest.Salt()+".drv")
	os.WriteFile(bad, []byte("Derive([(\"out\",garbage"), 0o644)
	defer os.Remove(bad)
	r := e.nixlayer("build", bad)
	if r.Err == nil || !strings.Contains(r.Stderr, filepath.Base(bad)) || len(e2etest.Lines(r.Stderr)) != 1 {
		t.Errorf("malformed .drv: %v\n%s", r.Err, r.Stderr)
	}

	r = e2etest.Run(e.dir, []string{"PATH=/nonexistent"}, nixlayerBin, append([]string{"build", "--cache", e.cache}, hello("x").cli()...)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "install Nix") {
		t.Errorf("missing Nix: %v\n%s", r.Err, r.Stderr)
	}

	ro := filepath.Join(e.dir, "ro-cache")
	os.MkdirAll(ro, 0o755)
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount read-only tmpfs: %v", err)
	}
	defer syscall.Unmount(ro, 0)
	r = e2etest.Run(e.dir, nil, nixlayerBin, append([]string{"build", "--cache", ro}, hello("x").cli()...)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "not writable") || !strings.Contains(r.Stderr, "--cache") {
		t.Errorf("read-only cache: %v\n%s", r.Err, r.Stderr)
	}
	for _, out := range []string{r.Stderr} {
		if n := len(e2etest.Lines(out)); n != 1 {
			t.Errorf("want a one-line error, got %d lines:\n%s", n, out)
		}
	}
}

// Issue 4, done when 1: a binary with $out split into pieces by gcc and a
// GNU build-id is rewritten exactly: the resumed output is registered in the
// store and Nix's own rebuild of the edited derivation matches it.
func TestExactRewriteOfSplitPath(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "embed", args: []string{"--argstr", "salt", e2etest.Salt()}}
	e.mustBuild(f)
	edited := f.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
	outs, stderr := e.mustBuild(edited, "--exact") // waits for (here: learns) the map
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "installPhase" {
		t.Fatalf("resume ran %v", ran)
	}
	for _, want := range []string{"exact", "fragments", "build-ids", "outputs registered in the Nix store"} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("resume output lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, " 0 fragments") || strings.Contains(stderr, " 0 build-ids") {
		t.Fatalf("the fixture no longer exercises fragments and build-ids:\n%s", stderr)
	}
	e.nixBuild(edited, "--check") // Nix rebuilds and compares with the registered output
	r := e2etest.Run(e.dir, nil, outs[0]+"/bin/embed")
	if !strings.Contains(r.Stdout, outs[0]+"/share") {
		t.Fatalf("rewritten program prints %q, want its own prefix %s", r.Stdout, outs[0])
	}
}

// Issue 4, done when 2 and 3: what cannot be rewritten (a gzip payload, a
// fixed build-id) is named, kept out of the store, and --exact rebuilds it
// with the real paths, equal to nix-build.
func TestInexactRewriteFallsBack(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ attr, want string }{
		{"gzipped", "note.txt.gz: gzip payload"},
		{"fixedid", "unknown build-id scheme"},
	} {
		t.Run(c.attr, func(t *testing.T) {
			f := fixture{attr: c.attr, args: []string{"--argstr", "salt", e2etest.Salt()}}
			e.mustBuild(f)
			e.learn(f)
			edited := f.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
			outs, stderr := e.mustBuild(edited)
			if !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "PROVISIONAL") {
				t.Fatalf("inexact resume not reported with %q:\n%s", c.want, stderr)
			}
			if strings.HasPrefix(outs[0], nixstore.StoreDir()) {
				t.Fatalf("inexact result %s reached the store", outs[0])
			}
			outs, stderr = e.mustBuild(edited, "--exact")
			// The file that cannot be rewritten is made in buildPhase: the
			// phases before it are kept, rewritten exactly.
			if eventOf(buildEvents(stderr), runner.EventFallback) == nil {
				t.Fatalf("--exact did not fall back to the producing phase:\n%s", stderr)
			}
			if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "buildPhase" {
				t.Fatalf("--exact fallback ran %v", ran)
			}
			if !strings.HasPrefix(outs[0], nixstore.StoreDir()) {
				t.Fatalf("--exact result %s not in the store", outs[0])
			}
			e.nixBuild(edited, "--check")
		})
	}
}

// After a cold build the path maps are learned in the background, so the
// first resume after an edit rewrites at once instead of building twice.
func TestBackgroundLearn(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "embed", args: []string{"--argstr", "salt", e2etest.Salt()}}
	r := e2etest.Run(e.dir, []string{"NIXLAYER_BACKGROUND_LEARN=1"}, nixlayerBin, append([]string{"build", "-Q", "--cache", e.cache}, f.cli()...)...)
	if r.Err != nil {
		t.Fatalf("cold build: %v\n%s", r.Err, r.Stderr)
	}
	m := regexp.MustCompile(`in the background \(pid (\d+)`).FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("no background learner started:\n%s", r.Stderr)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat("/proc/" + m[1]); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background learner did not finish")
		}
	}
	edited := f.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
	outs, stderr := e.mustBuild(edited)
	evs := buildEvents(stderr)
	if rw := eventOf(evs, runner.EventRewrite); eventOf(evs, runner.EventLearn) != nil || rw == nil || !rw.Exact {
		t.Fatalf("the resume did not use the learned map:\n%s", stderr)
	}
	if !strings.HasPrefix(outs[0], nixstore.StoreDir()) {
		t.Fatalf("exact resume kept outside the store: %s", outs[0])
	}
	e.nixBuild(edited, "--check")
}

// The oldest nixpkgs setup.sh generation (no runPhase, the phase loop
// inlined in genericBuild) is split into phases too, and resumes.
func TestOldSetupGeneration(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "oldgen", args: []string{"--arg", "nfiles", "20", "--argstr", "salt", e2etest.Salt()}}
	p := e.plan(f)
	if p.Whole || len(p.Phases) < 5 {
		t.Fatalf("the old-generation stdenv was not split into phases: %+v", p)
	}
	outs, _ := e.mustBuild(f)
	e.sameAsNix(f, outs[0])
	edited := f.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
	outs, stderr := e.mustBuild(edited, "--exact") // waits for (here: learns) the map
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "installPhase" {
		t.Fatalf("resume ran %v", ran)
	}
	e.sameAsNix(edited, outs[0])
}

// --from forces a restart point: phases before it are reused although
// their inputs changed, and the result is kept outside the store, marked.
func TestFromForcesRestart(t *testing.T) {
	e := newEnv(t)
	base := hello(e2etest.Salt())
	e.mustBuild(base)
	edited := base.with("--argstr", "configureExtraFlags", "--with-greeting=Hi")
	p := e.plan(edited, "--from", "install")
	st := phaseStatus(p)
	if st["configurePhase"].Status != runner.StatusForced || st["installPhase"].Status != runner.StatusRun {
		t.Fatalf("--from install plan: configure %s, install %s", st["configurePhase"].Status, st["installPhase"].Status)
	}
	outs, stderr := e.mustBuild(edited, "--from", "install")
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "installPhase" {
		t.Fatalf("--from install ran %v", ran)
	}
	// A phase the package does not have is refused, with the phase list.
	if r := e.nixlayer(append([]string{"build", "--from", "nosuchPhase"}, edited.cli()...)...); r.Err == nil || !strings.Contains(r.Stderr, "no such phase (phases: unpackPhase patchPhase") {
		t.Fatalf("--from nosuchPhase was not refused with the phase list: %v\n%s", r.Err, r.Stderr)
	}
	if !strings.Contains(stderr, "NOT VERIFIED") || strings.HasPrefix(outs[0], nixstore.StoreDir()) {
		t.Fatalf("a forced result must stay outside the store, marked:\n%s\n%v", stderr, outs)
	}
	// Without --from the same edit rebuilds from configure and is registered.
	outs, stderr = e.mustBuild(edited)
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != "configurePhase" {
		t.Fatalf("after --from, a normal build ran %v", ran)
	}
	e.sameAsNix(edited, outs[0])
}

// nixlayer verify compares a layered result with Nix's clean build file by
// file: identical for an exact resume; for an inexact one it names the file
// and why.
func TestVerifyExplainsDifferences(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "gzipped", args: []string{"--argstr", "salt", e2etest.Salt()}}
	e.mustBuild(f)
	r := e.nixlayer(append([]string{"verify", "-Q"}, f.cli()...)...)
	if r.Err != nil || !strings.Contains(r.Stdout, "identical to Nix's build") {
		t.Fatalf("verify of a cold build: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	edited := f.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
	e.mustBuild(edited) // inexact: kept in the cache
	r = e.nixlayer(append([]string{"verify", "-Q"}, edited.cli()...)...)
	if r.Err == nil || !strings.Contains(r.Stdout, "note.txt.gz") || !strings.Contains(r.Stdout, "gzip payload") {
		t.Fatalf("verify did not explain the inexact file: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
}

// Output checks Nix enforces after a build (disallowedReferences) fail the
// layered build the same way; fixed-output derivations are left to Nix,
// which checks their hash.
func TestNixChecksAndFixedOutput(t *testing.T) {
	e := newEnv(t)
	f := fixture{attr: "refcheck", args: []string{"--argstr", "salt", e2etest.Salt()}}
	r := e.nixlayer(append([]string{"build", "-Q"}, f.cli()...)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "is not allowed to refer to the following paths (disallowedReferences)") {
		t.Fatalf("a disallowed reference was not refused: %v\n%s", r.Err, r.Stderr)
	}
	drv := e2etest.Lines(e2etest.Run(e.dir, nil, "nix-instantiate", f.cli()[1:]...).Stdout)[0]
	out := e2etest.Lines(e2etest.Run(e.dir, nil, "nix-store", "-q", "--outputs", drv).Stdout)[0]
	if ok, _ := nixstore.IsValid(t.Context(), out); ok {
		t.Fatalf("%s was registered although Nix would refuse it", out)
	}
	if r := e2etest.Run(e.dir, nil, "nix-build", append([]string{"--no-out-link"}, f.cli()[1:]...)...); r.Err == nil {
		t.Fatal("nix-build accepted the fixture: it no longer tests output checks")
	}

	content := e2etest.Salt()
	sum := sha256.Sum256([]byte(content + "\n"))
	fod := fmt.Sprintf(`derivation { name = "fod"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo %s > $out" ]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "%x"; }`, content, sum)
	r = e.nixlayer("build", "-Q", "-E", fod)
	if r.Err != nil || !strings.Contains(r.Stderr, "built by Nix") {
		t.Fatalf("fixed-output derivation: %v\n%s", r.Err, r.Stderr)
	}
	if got, _ := os.ReadFile(e2etest.Lines(r.Stdout)[0]); strings.TrimSpace(string(got)) != content {
		t.Fatalf("fixed-output result holds %q", got)
	}
}

// Where overlay cannot work the store falls back to vfs (full copies):
// slower, the same results.
func TestVFSDriver(t *testing.T) {
	e := newEnv(t)
	vfs := []string{"NIXLAYER_STORAGE_DRIVER=vfs"}
	f := hello(e2etest.Salt())
	r := e2etest.Run(e.dir, vfs, nixlayerBin, append([]string{"build", "-Q", "--progress=json", "--cache", e.cache}, f.cli()...)...)
	if r.Err != nil {
		t.Fatalf("vfs cold build: %v\n%s", r.Err, r.Stderr)
	}
	edited := f.with("--argstr", "postInstallExtra", "echo vfs > $out/vfs")
	r = e2etest.Run(e.dir, vfs, nixlayerBin, append([]string{"build", "-Q", "--progress=json", "--cache", e.cache}, edited.cli()...)...)
	if r.Err != nil {
		t.Fatalf("vfs resumed build: %v\n%s", r.Err, r.Stderr)
	}
	if ran := ranPhases(r.Stderr); len(ran) == 0 || ran[0] != "installPhase" {
		t.Fatalf("vfs resume ran %v", ran)
	}
	e.sameAsNix(edited, e2etest.Lines(r.Stdout)[0])
	if _, err := os.Stat(filepath.Join(e.cache, "storage", "vfs")); err != nil {
		t.Fatalf("the cache does not use the vfs driver: %v", err)
	}
}

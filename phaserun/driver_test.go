package phaserun

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nixlayer/nixlayer/shellstate"
)

// These tests run driver.bash in plain bash (no sandbox, no Nix) against
// the fixture stdenvs, the way the runner runs it: one process per step,
// the shell state carried from one to the next.

// driverWorld is a build directory, an output path and a stdenv for the
// driver to run in.
type driverWorld struct {
	t      *testing.T
	build  string
	out    string
	stdenv string
	env    map[string]string
}

// fixtureStdenvs are the stdenv generations the driver must handle.
func fixtureStdenvs(t *testing.T) map[string]string {
	_, file, _, _ := runtime.Caller(0)
	testdata := filepath.Join(filepath.Dir(file), "..", "testdata")
	old := t.TempDir()
	// As in testdata/default.nix: the old setup sources the fixture's as setup-base.
	for src, dst := range map[string]string{"stdenv/setup": "setup-base", "stdenv-old/setup": "setup"} {
		data, err := os.ReadFile(filepath.Join(testdata, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(old, dst), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]string{"runPhase": filepath.Join(testdata, "stdenv"), "oldest": old}
}

// forEachStdenv runs test as a subtest for each fixture stdenv.
func forEachStdenv(t *testing.T, test func(t *testing.T, stdenv string)) {
	for gen, stdenv := range fixtureStdenvs(t) {
		t.Run(gen, func(t *testing.T) { test(t, stdenv) })
	}
}

func newDriverWorld(t *testing.T, stdenv string, attrs map[string]string) *driverWorld {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	w := &driverWorld{t: t, build: filepath.Join(dir, "build"), out: filepath.Join(dir, "out"), stdenv: stdenv}
	src := filepath.Join(dir, "src", "pkg-1")
	for _, d := range []string{w.build, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	makefile := "all:\n\techo built > built.txt\ninstall:\n\tmkdir -p $(out)\n\tcp built.txt $(out)/\n"
	if err := os.WriteFile(filepath.Join(src, "Makefile"), []byte(makefile), 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = map[string]string{
		"PATH": "/path-not-set", "HOME": "/homeless-shelter", "NIX_BUILD_TOP": w.build, "TMPDIR": w.build,
		"stdenv": stdenv, "out": w.out, "outputs": "out", "name": "pkg-1", "src": src,
	}
	// As Nix sets it: else the stdenv takes the shell bash found for
	// itself, which is the user's login shell (nologin for a system user).
	w.env["builder"] = bash
	for k, v := range attrs {
		w.env[k] = v
	}
	return w
}

// newHookWorld is a build of buildPhase (its code given) then installPhase
// whose exitHook and failureHook write "exit" and "failure" lines to
// w.read("hooks").
func newHookWorld(t *testing.T, stdenv, buildPhase string) *driverWorld {
	return newDriverWorld(t, stdenv, map[string]string{
		"exitHook":    "echo exit >> $NIX_BUILD_TOP/hooks",
		"failureHook": "echo failure >> $NIX_BUILD_TOP/hooks",
		"phases":      "buildPhase installPhase",
		"buildPhase":  buildPhase,
	})
}

// driverRun is what one driver process reported.
type driverRun struct {
	exit   int
	dumps  []*shellstate.Capture
	phases []string // fd 5
	log    string
}

// run runs the driver in MODE for PHASE with the restore script on fd 3.
func (w *driverWorld) run(mode, phase string, last bool, restore string) driverRun {
	w.t.Helper()
	args := append([]string{"-e", "-c", driverScript}, driverArgs("default-builder.sh", mode, phase, last)...)
	cmd := exec.Command("bash", args...)
	cmd.Dir = w.build
	for k, v := range w.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	restoreR, restoreW, _ := os.Pipe()
	dumpR, dumpW, _ := os.Pipe()
	phasesR, phasesW, _ := os.Pipe()
	cmd.ExtraFiles = []*os.File{restoreR, dumpW, phasesW}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	restoreR.Close()
	dumpW.Close()
	phasesW.Close()
	var dumps, phases []byte
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); io.WriteString(restoreW, restore); restoreW.Close() }()
	go func() { defer wg.Done(); dumps, _ = io.ReadAll(dumpR) }()
	go func() { defer wg.Done(); phases, _ = io.ReadAll(phasesR) }()
	err := cmd.Wait()
	wg.Wait()
	r := driverRun{log: log.String(), phases: strings.Fields(string(phases))}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		r.exit = exitErr.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	if r.dumps, err = shellstate.ParseDumps(dumps); err != nil {
		w.t.Fatalf("%s %s: %v\n%s", mode, phase, err, r.log)
	}
	return r
}

// probe asks the stdenv for its phases and the state genericBuild sets up.
func (w *driverWorld) probe() ([]string, *shellstate.Delta) {
	w.t.Helper()
	r := w.run("probe", "", false, "")
	if r.exit != 0 || len(r.dumps) != 2 {
		w.t.Fatalf("probe: exit %d, %d dumps\n%s", r.exit, len(r.dumps), r.log)
	}
	return r.phases, shellstate.Diff(r.dumps[0], r.dumps[1])
}

// phase runs one phase on the state left by the earlier ones and returns
// the state after it.
func (w *driverWorld) phase(name string, last bool, state *shellstate.Delta) (driverRun, *shellstate.Delta) {
	w.t.Helper()
	r := w.run("phase", name, last, state.Script())
	if len(r.dumps) != 2 {
		w.t.Fatalf("%s: %d state captures, want 2 (exit %d)\n%s", name, len(r.dumps), r.exit, r.log)
	}
	return r, shellstate.Diff(r.dumps[0], r.dumps[1])
}

func (w *driverWorld) read(rel string) string {
	data, _ := os.ReadFile(filepath.Join(w.build, rel))
	return string(data)
}

var standardOrder = []string{"unpackPhase", "patchPhase", "configurePhase", "buildPhase", "checkPhase", "installPhase", "fixupPhase", "installCheckPhase", "distPhase"}

func TestDriverProbe(t *testing.T) {
	forEachStdenv(t, func(t *testing.T, stdenv string) {
		phases, start := newDriverWorld(t, stdenv, nil).probe()
		if !slices.Equal(phases, standardOrder) {
			t.Errorf("phases %v, want %v", phases, standardOrder)
		}
		if start == nil {
			t.Fatal("no start state")
		}
		custom, _ := newDriverWorld(t, stdenv, map[string]string{"preInstallPhases": "stampPhase", "postPhases": "lastPhase"}).probe()
		want := slices.Insert(slices.Clone(standardOrder), 5, "stampPhase")
		if want = append(want, "lastPhase"); !slices.Equal(custom, want) {
			t.Errorf("phases with preInstallPhases and postPhases: %v, want %v", custom, want)
		}
		fixed, _ := newDriverWorld(t, stdenv, map[string]string{"phases": "buildPhase installPhase"}).probe()
		if !slices.Equal(fixed, []string{"buildPhase", "installPhase"}) {
			t.Errorf("phases from the phases attribute: %v", fixed)
		}
	})
}

// A whole build, one process per phase, gives the output; the stdenv's
// switches skip phases (checkPhase is off without doCheck).
func TestDriverRunsEveryPhase(t *testing.T) {
	forEachStdenv(t, func(t *testing.T, stdenv string) {
		w := newDriverWorld(t, stdenv, map[string]string{"dontPatch": "1", "postInstall": "echo $PWD > $out/cwd"})
		phases, state := w.probe()
		var log strings.Builder
		for i, ph := range phases {
			var r driverRun
			r, state = w.phase(ph, i == len(phases)-1, state)
			if r.exit != 0 || !slices.Equal(r.phases, []string{"returned"}) {
				t.Fatalf("%s: exit %d, fd 5 %q\n%s", ph, r.exit, r.phases, r.log)
			}
			log.WriteString(r.log)
		}
		if got, _ := os.ReadFile(filepath.Join(w.out, "built.txt")); string(got) != "built\n" {
			t.Errorf("output built.txt = %q\n%s", got, log.String())
		}
		// The working directory carried over from unpackPhase.
		if got, _ := os.ReadFile(filepath.Join(w.out, "cwd")); strings.TrimSpace(string(got)) != filepath.Join(w.build, "pkg-1") {
			t.Errorf("postInstall ran in %q", got)
		}
		for ph, ran := range map[string]bool{"unpackPhase": true, "patchPhase": false, "checkPhase": false, "installPhase": true, "installCheckPhase": false} {
			if strings.Contains(log.String(), "Running phase: "+ph) != ran {
				t.Errorf("%s ran: %v, want %v\n%s", ph, !ran, ran, log.String())
			}
		}
	})
}

// The stdenv's EXIT trap (exitHook) runs after the last phase only, as in a
// single-process build; on failure it runs failureHook and the state is
// still captured (for a shell in the failed state).
func TestDriverExitTrap(t *testing.T) {
	forEachStdenv(t, func(t *testing.T, stdenv string) {
		w := newHookWorld(t, stdenv, "echo building; marker=set-in-build")
		_, state := w.probe()
		r, state := w.phase("buildPhase", false, state)
		if r.exit != 0 || w.read("hooks") != "" {
			t.Fatalf("buildPhase (not last): exit %d, hooks %q\n%s", r.exit, w.read("hooks"), r.log)
		}
		if !strings.Contains(state.Vars["marker"], "set-in-build") {
			t.Errorf("state after buildPhase lacks its variable: %v", state.Vars["marker"])
		}
		r, _ = w.phase("installPhase", true, state)
		if r.exit != 0 || w.read("hooks") != "exit\n" {
			t.Fatalf("installPhase (last): exit %d, hooks %q\n%s", r.exit, w.read("hooks"), r.log)
		}

		w = newHookWorld(t, stdenv, "marker=before-failure; false")
		_, state = w.probe()
		r, after := w.phase("buildPhase", false, state)
		if r.exit == 0 || len(r.phases) != 0 || w.read("hooks") != "failure\n" {
			t.Fatalf("failing buildPhase: exit %d, fd 5 %q, hooks %q\n%s", r.exit, r.phases, w.read("hooks"), r.log)
		}
		if !strings.Contains(after.Vars["marker"], "before-failure") {
			t.Errorf("the failed state lacks the phase's variable: %v", after.Vars["marker"])
		}
	})
}

// A phase whose code exits the builder ends the build (Nix skips the other
// phases): the driver does not report that it returned, and the stdenv's
// exit handling runs as it would in Nix.
func TestDriverPhaseExitsEarly(t *testing.T) {
	forEachStdenv(t, func(t *testing.T, stdenv string) {
		w := newHookWorld(t, stdenv, "mkdir -p $out; echo early > $out/early; exit 0")
		_, state := w.probe()
		r, _ := w.phase("buildPhase", false, state)
		if r.exit != 0 || len(r.phases) != 0 {
			t.Fatalf("early exit: exit %d, fd 5 %q (want no \"returned\")\n%s", r.exit, r.phases, r.log)
		}
		if w.read("hooks") != "exit\n" {
			t.Errorf("exitHook after an early exit: %q", w.read("hooks"))
		}
	})
}

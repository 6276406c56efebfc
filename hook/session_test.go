package hook

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/logtail"
)

// nixBuildLearning is nixBuild with the hook's background work on, as
// users have it.
func nixBuildLearning(t *testing.T, cache string, args ...string) nixRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix-build", append([]string{"--no-out-link", "--option", "build-hook", hookBin}, args...)...)
	cmd.Env = append(os.Environ(), "NIXLAYER_CACHE="+cache, "NIXLAYER_BACKGROUND_LEARN=1")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	r := nixRun{stdout: strings.TrimSpace(out.String()), stderr: errb.String(), err: err, took: time.Since(t0)}
	t.Logf("nix-build %s: %v in %s", strings.Join(args[3:], " "), err, r.took.Round(time.Millisecond))
	return r
}

// waitBackground waits (bounded) until the cache's background work is
// done and no result is pending.
func waitBackground(t *testing.T, cache string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		out, err := exec.Command(hookBin, "status", "--json", "--cache", cache).Output()
		if err != nil {
			t.Fatalf("nixlayer status: %v", err)
		}
		var st struct {
			Results []struct {
				State string `json:"state"`
			} `json:"results"`
			Background []any `json:"background"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		pending := len(st.Background) > 0
		for _, r := range st.Results {
			pending = pending || r.State == "provisional" || r.State == "verifying"
		}
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(cache, "learn.log"))
			t.Fatalf("background work not done after %s: %s\nlearn.log:\n%s", limit, out, log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Done when 2 (hook): the editing session through nix-build on one cache.
// The edit made the moment the cold build ends does not wait for the
// learner: the pair it would make with a full build cannot teach the map
// (the salt's hashes agree at an index), so it learns it in front (the
// reused phases once more with a synthetic path, as long as a full
// build), and the edit right after it resumes from that map (issue 24,
// done when 1); once the background learner is done, edits of earlier
// phases resume too; every result is registered and equals nix-build
// --check.
func TestHookEditingSession(t *testing.T) {
	needE2E(t)
	cache := t.TempDir()
	// The path this session follows: a full build of the edit right after
	// the cold build would teach no map (the pair's hashes agree at an index).
	baseOf := func(s string) []string {
		return []string{testdata, "-A", "hello", "--arg", "nfiles", "6", "--arg", "funcsPerFile", "4", "--argstr", "salt", s}
	}
	s, err := e2etest.UnpairableSalt("", func(x string) []string { return baseOf(t.Name() + x) },
		func(x string) []string {
			return append(baseOf(t.Name()+x), "--argstr", "postInstallExtra", "echo one > $out/one")
		})
	if err != nil {
		t.Fatal(err)
	}
	base := baseOf(t.Name() + s)
	with := func(args []string, more ...string) []string { return append(append([]string{}, args...), more...) }
	post1 := with(base, "--argstr", "postInstallExtra", "echo one > $out/one")
	post1b := with(base, "--argstr", "postInstallExtra", "echo one again > $out/one")
	flags := with(post1, "--argstr", "configureExtraFlags", "--with-greeting=Hi")
	post2 := with(flags, "--argstr", "postInstallExtra", "echo two > $out/two")
	source := with(post2, "--argstr", "srcVersion", "2")
	steps := []struct {
		name string
		args []string
		want string // in the hook's log
		wait bool   // let the background work finish first
		// learns: the build decides to learn the path map in front
		learns bool
	}{
		{"cold", base, "ran: unpackPhase", false, false},
		{"postInstall at once", post1, "running the 5 reused phases once more with a synthetic path", false, true},
		{"postInstall again at once", post1b, "ran: installPhase", false, false},
		{"configureFlags", flags, "ran: configurePhase", true, false},
		{"postInstall", post2, "ran: installPhase", true, false},
		{"source", source, "ran: unpackPhase", false, false},
	}
	for _, st := range steps {
		if st.wait {
			waitBackground(t, cache, 5*time.Minute)
		}
		r := nixBuildLearning(t, cache, st.args...)
		out := r.mustSucceed(t)
		if !r.builtByNixlayer() || !strings.Contains(r.stderr, st.want) {
			t.Fatalf("%s: not built by nixlayer as expected (no %q):\n%s", st.name, st.want, logtail.Lines(r.stderr, 40))
		}
		// The edit that learns in front may find the map the learner stored
		// while this build waited for its lock (a small package learns fast).
		if !st.learns && strings.Contains(r.stderr, "learning: [") {
			t.Fatalf("%s: the hook learned in the foreground:\n%s", st.name, logtail.Lines(r.stderr, 40))
		}
		if st.name == "postInstall again at once" || st.learns {
			r.mustSay(t, st.name+": did not resume", "reused: unpackPhase patchPhase configurePhase buildPhase checkPhase")
		}
		run(t, "nix-store", "--verify-path", out)
	}
	waitBackground(t, cache, 5*time.Minute)
	for _, st := range steps {
		nixCheck(t, st.args)
	}
	// The first version again: its outputs are valid; Nix builds nothing.
	if r := nixBuildLearning(t, cache, base...); r.err != nil || r.builtByNixlayer() {
		t.Fatalf("going back to the first version built again: %v\n%s", r.err, logtail.Lines(r.stderr, 20))
	}
}

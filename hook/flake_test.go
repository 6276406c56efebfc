package hook

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/logtail"
)

// nixFlakeBuild runs `nix build` (flakes on for the call, as a user's
// nix.conf would have them) in dir with the hook and the given cache;
// ./result is made as nix build makes it; the build log is printed
// (--print-build-logs) for the hook's messages.
func nixFlakeBuild(t *testing.T, cache, dir string, args ...string) nixRun {
	t.Helper()
	r := runNix(t, cache, dir, "nix", append([]string{"build", "--print-build-logs", "--extra-experimental-features", "nix-command flakes", "--option", "build-hook", hookBin}, args...)...)
	if r.err != nil {
		t.Fatalf("nix build %s: %v\n%s", strings.Join(args, " "), r.err, logtail.Lines(r.stderr, 40))
	}
	return r
}

// Issue 26: `nix build .#hello` of a flake (path: inputs only, the fixture
// stdenv) goes through the hook: built by nixlayer into ./result; after a
// postInstall edit the hook resumes at installPhase, exactly, and Nix's
// own rebuild of the edited package (nix build --rebuild, no hook) agrees.
// `nixlayer learn .#hello` and `nixlayer plan .#hello` name the same
// package.
func TestHookFlakeNixBuild(t *testing.T) {
	needE2E(t)
	cache, dir := t.TempDir(), t.TempDir()
	if err := e2etest.WriteFlake(dir, salt(t)); err != nil {
		t.Fatal(err)
	}
	r := nixFlakeBuild(t, cache, dir, ".#hello")
	if !r.builtByNixlayer() {
		t.Fatalf("not built by nixlayer:\n%s", logtail.Lines(r.stderr, 30))
	}
	out, err := os.Readlink(filepath.Join(dir, "result"))
	if err != nil {
		t.Fatalf("nix build made no ./result: %v", err)
	}
	run(t, "nix-store", "--verify-path", out)

	learnNow(t, cache, filepath.Join(dir)+"#hello") // what the background learner does
	flake := filepath.Join(dir, "flake.nix")
	text, err := os.ReadFile(flake)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(text), "fixture { # edit", `fixture { postInstallExtra = "echo edited > $out/edited"; # edit`, 1)
	if err := os.WriteFile(flake, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := exec.Command(hookBin, "plan", "--cache", cache, ".#hello")
	plan.Dir = dir
	if msg, err := plan.CombinedOutput(); err != nil || !strings.Contains(string(msg), "▶ installPhase") || !strings.Contains(string(msg), "postInstall") {
		t.Fatalf("nixlayer plan .#hello after the edit: %v\n%s", err, msg)
	}
	r = nixFlakeBuild(t, cache, dir, ".#hello")
	if !r.builtByNixlayer() {
		t.Fatalf("not built by nixlayer:\n%s", logtail.Lines(r.stderr, 30))
	}
	r.mustSay(t, "the rebuild did not resume exactly at installPhase", resumedExactlyAtInstall...)
	out, err = os.Readlink(filepath.Join(dir, "result"))
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, "cat", out+"/edited"); got != "edited" {
		t.Fatalf("edited file: %q", got)
	}
	run(t, "nix-store", "--verify-path", out)
	// Nix rebuilds the edited package itself, without the hook, and fails
	// if its output differs from the registered one.
	check := exec.Command("nix", "build", "--extra-experimental-features", "nix-command flakes", "--option", "build-hook", "", "--rebuild", "--no-link", ".#hello")
	check.Dir = dir
	if msg, err := check.CombinedOutput(); err != nil {
		t.Fatalf("nix build --rebuild of the resumed output: %v\n%s", err, logtail.Lines(string(msg), 20))
	}
}

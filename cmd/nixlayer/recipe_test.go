package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/runner"
)

// A nixlayer whose driver differs (an upgrade) reuses nothing the other one
// made: every phase runs again and the stdenv is probed again. The layers
// of each stay the other's cache hits only for itself.
func TestDriverChangeRebuildsEverything(t *testing.T) {
	e := newEnv(t)
	driver, err := os.ReadFile(filepath.Join(e2etest.RepoRoot(), "runner", "driver.bash"))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := e2etest.BuildBinaryWith(t.TempDir(), map[string]string{
		"runner/driver.bash": string(driver) + "\n: a later nixlayer's driver\n",
	})
	if err != nil {
		t.Fatalf("building nixlayer with a changed driver: %v", err)
	}
	f := hello(e2etest.Salt())
	built, stderr := e.mustBuild(f)
	e.forget(built...) // else a build gives the valid outputs back
	all := ranPhases(stderr)
	probes := func() int {
		ps, _ := filepath.Glob(filepath.Join(e.cache, "probes", "*.json"))
		return len(ps)
	}
	if len(all) < 5 || probes() != 1 {
		t.Fatalf("cold build ran %v with %d probes", all, probes())
	}

	r := e2etest.Run(e.dir, nil, changed, append([]string{"build", "--cache", e.cache, "-Q", "--progress=json"}, f.cli()...)...)
	if r.Err != nil {
		t.Fatalf("build with the changed driver: %v\n%s", r.Err, r.Stderr)
	}
	if ran := ranPhases(r.Stderr); !slices.Equal(ran, all) {
		t.Fatalf("with a changed driver the build ran %v, want every phase %v:\n%s", ran, all, r.Stderr)
	}
	if start := eventOf(buildEvents(r.Stderr), runner.EventStart); start == nil || start.Follows != "" || !strings.Contains(start.Message, "(nixlayer driver and sandbox)") {
		t.Errorf("the first phase does not say the driver changed: %+v", start)
	}
	if probes() != 2 {
		t.Errorf("the stdenv was not probed again with the changed driver (%d probes)", probes())
	}

	e.forget(e2etest.Lines(r.Stdout)...)
	if _, stderr := e.mustBuild(f); len(ranPhases(stderr)) != 0 {
		t.Fatalf("the original nixlayer does not reuse its own layers:\n%s", stderr)
	}
}

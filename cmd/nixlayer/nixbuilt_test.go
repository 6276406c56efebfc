package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/hook"
	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/runner"
)

// Issue 5: a build Nix runs itself, recorded by nixlayer's pre-/post-build-
// hook, shows up in `ls` (its own section, and "builds" with --builds
// --json) and in `plan` ("built by Nix at … (no layers: next build is
// cold)", builtByNix in --json).
func TestNixBuildShowsInLsAndPlan(t *testing.T) {
	e := newEnv(t)
	wrappers := t.TempDir()
	if err := (hook.Setup{Binary: nixlayerBin, HooksDir: wrappers, WithRecord: true}).WriteWrappers(); err != nil {
		t.Fatal(err)
	}
	f := hello("nixbuilt-" + e2etest.Salt())
	args := append([]string{"--no-out-link",
		"--option", "pre-build-hook", filepath.Join(wrappers, "pre-build-hook"),
		"--option", "post-build-hook", filepath.Join(wrappers, "post-build-hook")}, f.cli()[1:]...)
	r := e2etest.Run(e.dir, []string{"NIXLAYER_CACHE=" + e.cache}, "nix-build", args...)
	if r.Err != nil {
		t.Fatalf("nix-build: %v\n%s", r.Err, r.Stderr)
	}
	out := e2etest.Lines(r.Stdout)[0]
	drvPath := strings.TrimSpace(e2etest.Run(e.dir, nil, "nix-store", "-q", "--deriver", out).Stdout)

	// ls --json --builds: the layers (none) and the build Nix made.
	var ls struct {
		Layers []runner.LayerRow  `json:"layers"`
		Builds []buildindex.Build `json:"builds"`
	}
	nixbuiltJSON(t, e.nixlayer("ls", "--json", "--builds"), &ls)
	// (hello's source is a derivation of its own, also built by Nix.)
	find := func(bs []buildindex.Build) *buildindex.Build {
		for i := range bs {
			if bs[i].Drv == drvPath {
				return &bs[i]
			}
		}
		return nil
	}
	if ls.Layers == nil || len(ls.Layers) != 0 || find(ls.Builds) == nil {
		t.Fatalf("ls --json --builds lacks %s: %+v", drvPath, ls)
	}
	b := *find(ls.Builds)
	if b.Drv != drvPath || b.By != "nix" || b.Status != "built" || b.Outputs["out"] != out ||
		b.Duration <= 0 || b.Start.IsZero() || b.End.Before(b.Start) {
		t.Fatalf("build in ls: %+v (want %s → %s)", b, drvPath, out)
	}
	// The package filter keeps it; another name drops it.
	nixbuiltJSON(t, e.nixlayer(append([]string{"ls", "--json", "--builds"}, f.cli()...)...), &ls)
	if len(ls.Builds) != 1 || find(ls.Builds) == nil {
		t.Errorf("ls PACKAGE --builds: %+v", ls.Builds)
	}
	nixbuiltJSON(t, e.nixlayer("ls", "--json", "--builds", "no-such-pkg"), &ls)
	if len(ls.Builds) != 0 {
		t.Errorf("ls no-such-pkg --builds: %+v", ls.Builds)
	}
	// Plain ls --json stays the array of layers.
	var rows []runner.LayerRow
	nixbuiltJSON(t, e.nixlayer("ls", "--json"), &rows)
	if len(rows) != 0 {
		t.Errorf("ls --json: %+v", rows)
	}
	table := e.nixlayer("ls")
	if table.Err != nil || !strings.Contains(table.Stdout, "Builds recorded through Nix") ||
		!strings.Contains(table.Stdout, drvPath) || !strings.Contains(table.Stdout, "out="+out) {
		t.Errorf("ls table:\n%s%s", table.Stdout, table.Stderr)
	}

	// plan --json: builtByNix, no layers.
	var plan struct {
		runner.Plan
		BuiltByNix *struct {
			buildindex.Build
			NoLayers bool `json:"noLayers"`
		} `json:"builtByNix"`
	}
	nixbuiltJSON(t, e.nixlayer(append([]string{"plan", "--json"}, f.cli()...)...), &plan)
	if plan.Drv != drvPath || len(plan.Phases) == 0 {
		t.Fatalf("plan: %+v", plan.Plan)
	}
	nb := plan.BuiltByNix
	if nb == nil || !nb.NoLayers || nb.By != "nix" || nb.Outputs["out"] != out || nb.Duration <= 0 || !nb.End.Equal(b.End) {
		t.Fatalf("plan --json builtByNix: %+v", nb)
	}
	text := e.nixlayer(append([]string{"plan"}, f.cli()...)...)
	if text.Err != nil || !strings.Contains(text.Stdout, "  built by Nix at "+b.End.Local().Format("2006-01-02 15:04:05")+" in ") ||
		!strings.Contains(text.Stdout, "(no layers: next build is cold)") {
		t.Errorf("plan text:\n%s%s", text.Stdout, text.Stderr)
	}
}

func nixbuiltJSON(t *testing.T, r e2etest.Result, v any) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("nixlayer: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

func cmdBuild(ctx context.Context, args []string) error {
	c, err := parseArgs(args, append([]string{"--exact", "--no-learn"}, progressFlags...), []string{"--progress"})
	if err != nil {
		return err
	}
	if err := checkProgressFlag(c); err != nil {
		return err
	}
	drvPath, svc, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.Build(ctx, api.BuildRequest{
		DrvPath: drvPath, Strict: c.strict, From: c.from, Exact: c.flags["--exact"], Learn: !c.flags["--no-learn"],
		Registry: c.registry(),
	}, api.Output{Log: c.buildLog(), Progress: printProgress(os.Stderr, c)})
	if err != nil {
		return err
	}
	if !c.noLink {
		if err := linkResults(ctx, res, c.outLink); err != nil {
			return err
		}
	}
	if c.json {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	if !res.Verified {
		why := "it reuses layers that rest on an inexact rewrite of an earlier build; --exact rebuilds them"
		if res.Plan.From != "" {
			why = "it reuses layers whose inputs differ (--from)"
		}
		if res.Rewrite != nil && !res.Rewrite.Exact {
			why = "reused layers could not be rewritten exactly for the new output path (" + strings.Join(res.Rewrite.Why, "; ") + "); --exact rebuilds instead"
		}
		fmt.Fprintf(os.Stderr, "nixlayer: NOT VERIFIED: the result stays outside the Nix store because %s.\n", why)
	}
	for _, name := range slices.Sorted(maps.Keys(res.Outputs)) {
		fmt.Println(res.Outputs[name])
	}
	return nil
}

// linkResults makes ./result (result-dev, …) point at the outputs, as
// nix-build does: a store path becomes an indirect GC root (through
// nix-daemon for users), a result kept outside the store a plain link.
func linkResults(ctx context.Context, res *runner.Result, base string) error {
	for name, p := range res.Outputs {
		link := base
		if name != "out" {
			link = base + "-" + name
		}
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			os.Remove(link)
		}
		if res.InStore {
			if err := nixstore.AddGCRoot(ctx, p, link); err != nil {
				return err
			}
			continue
		}
		if err := os.Symlink(p, link); err != nil {
			return fmt.Errorf("creating %s: %w", link, err)
		}
	}
	return nil
}

// printProgress reports a build's events on w: as text, with a heartbeat
// for long phases (the log may be hidden with -Q), or with --progress=json
// as JSON lines, one event each, for programs and tests.
func printProgress(w io.Writer, c *common) func(runner.Event) {
	if c.progressJSON() {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return func(ev runner.Event) { enc.Encode(ev) }
	}
	var stop chan struct{}
	heartbeat := func(ev runner.Event) {
		stop = make(chan struct{})
		go func(stop chan struct{}, t0 time.Time) {
			tick := time.NewTicker(30 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					fmt.Fprintf(w, "nixlayer: %s\n", ev.StillRunning(time.Since(t0)))
				}
			}
		}(stop, time.Now())
	}
	return func(ev runner.Event) {
		if stop != nil {
			close(stop)
			stop = nil
		}
		if ev.Kind == runner.EventStart {
			heartbeat(ev)
		}
		if text := ev.Text(); text != "" {
			fmt.Fprintf(w, "nixlayer: %s\n", text)
		}
	}
}

// progressFlags select how build and learn report progress:
// --progress=json (or --progress json) for JSON lines, text by default.
var progressFlags = []string{"--progress=json", "--progress=text"}

func (c *common) progressJSON() bool {
	return c.flags["--progress=json"] || c.value("--progress") == "json"
}

func checkProgressFlag(c *common) error {
	switch v := c.value("--progress"); v {
	case "", "json", "text":
		return nil
	default:
		return fmt.Errorf("--progress takes json or text, not %q", v)
	}
}

func round(d time.Duration) string { return runner.Duration(d) }

func cmdPlan(ctx context.Context, args []string) error {
	c, err := parseArgs(args, nil, nil)
	if err != nil {
		return err
	}
	drvPath, svc, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	pr, err := svc.Plan(ctx, api.PlanRequest{DrvPath: drvPath, Strict: c.strict, From: c.from}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	p := pr.Plan
	nixBuilt := builtByNix(pr) // builds Nix ran itself (builds.go)
	if c.json {
		return printJSON(planWithIndex{p, nixBuilt})
	}
	fmt.Printf("%s  (%s)\n", p.Name, p.Drv)
	if nixBuilt != nil {
		fmt.Printf("  %s\n", nixBuilt.text())
	}
	if p.Whole {
		fmt.Printf("  built as one layer: %s\n", p.WhyWhole)
	}
	for _, ph := range p.Phases {
		switch ph.Status {
		case runner.StatusCached:
			fmt.Printf("  ✓ %-20s cached   layer %s, %s, built in %s\n", ph.Name, layers.Short(ph.Layer.ID), layers.FormatSize(ph.Layer.Size), round(ph.Layer.Duration))
		case runner.StatusForced:
			fmt.Printf("  ! %-20s forced   layer %s: %s\n", ph.Name, layers.Short(ph.Layer.ID), ph.Reason)
		default:
			fmt.Printf("  ▶ %-20s run      %s\n", ph.Name, ph.Reason)
		}
	}
	if p.Rewrite != nil {
		var pairs []string
		for o, n := range p.Rewrite {
			pairs = append(pairs, o+" → "+n)
		}
		how := map[string]string{
			"exact":       "exactly, with the learned path map",
			"not learned": "after learning which bytes depend on the path (a second build of the reused phases)",
		}[p.RewriteMap]
		if how == "" {
			how = "but not exactly (" + strings.TrimPrefix(p.RewriteMap, "inexact: ") + "); the result stays outside the store unless --exact"
		}
		fmt.Printf("  reused layers will be rewritten for the new output path %s: %s\n", how, strings.Join(pairs, ", "))
	}
	return nil
}

func cmdVerify(ctx context.Context, args []string) error {
	c, err := parseArgs(args, nil, nil)
	if err != nil {
		return err
	}
	drvPath, svc, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	v, err := svc.Verify(ctx, api.VerifyRequest{DrvPath: drvPath}, api.Output{Log: c.buildLog()})
	if err != nil {
		return err
	}
	if c.json {
		if err := printJSON(v); err != nil {
			return err
		}
	} else if v.Identical {
		for _, name := range slices.Sorted(maps.Keys(v.Layered)) {
			fmt.Printf("%s: identical to Nix's build (%s)\n", name, v.NARHash[name])
		}
	} else {
		for _, d := range v.Differences {
			fmt.Printf("%s: %s: %s\n", d.Output, d.Path, d.Why)
		}
	}
	if !v.Identical {
		return fmt.Errorf("the layered result of %s differs from Nix's build in %d file(s)", drvPath, len(v.Differences))
	}
	return nil
}

func cmdLearn(ctx context.Context, args []string) error {
	c, err := parseArgs(args, progressFlags, []string{"--progress"})
	if err != nil {
		return err
	}
	if err := checkProgressFlag(c); err != nil {
		return err
	}
	drvPath, svc, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	return svc.Learn(ctx, api.LearnRequest{DrvPath: drvPath, Registry: c.registry()}, api.Output{Progress: printProgress(os.Stderr, c)})
}

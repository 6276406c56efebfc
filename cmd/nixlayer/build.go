package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/runner"
)

func cmdBuild(ctx context.Context, args []string) error {
	c, err := parseCommand("build", args)
	if err != nil {
		return err
	}
	if err := checkProgressFlag(c); err != nil {
		return err
	}
	drvPath, err := c.drvPath(ctx)
	if err != nil {
		return err
	}
	link := c.outLink
	if c.noLink {
		link = ""
	}
	if c.from == "" && !c.registry().Restricted() {
		// A built version comes back as nix-build gives it: no sandbox, no
		// layers. Switches only trusted users may give are judged by the
		// service first, even when nothing would be built.
		if outs, ok, err := build.AlreadyBuilt(ctx, drvPath, link); err != nil {
			return err
		} else if ok {
			return printBuilt(c, build.BuiltResult(outs))
		}
	}
	svc, err := c.service(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	if link != "" {
		link, _ = filepath.Abs(link) // recorded: verification repoints it
	}
	res, err := svc.Build(ctx, api.BuildRequest{
		DrvPath: drvPath, Strict: c.strict, From: c.from, Exact: c.flags["--exact"], NoLearn: c.flags["--no-learn"], ResultLink: link,
		Registry: c.registry(),
	}, api.Output{Log: c.buildLog(), Progress: printProgress(os.Stderr, c)})
	if err != nil {
		return err
	}
	if link != "" {
		if err := linkResults(ctx, res, link); err != nil {
			return err
		}
	}
	return printBuilt(c, res)
}

// printBuilt says where a build's result is, and how far it is verified.
func printBuilt(c *common, res *runner.Result) error {
	if c.json {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	switch res.State {
	case events.StateProvisional:
		fmt.Fprintf(os.Stderr, "nixlayer: PROVISIONAL: the result stays in the cache until it is verified in the background (nixlayer status): %s.\n", res.Why)
		if res.Exactness != nil && !res.Exactness.Exact {
			fmt.Fprintf(os.Stderr, "nixlayer: not exact because %s.\n", res.WhyNotVerified())
		}
	case events.StateUnverified:
		fmt.Fprintf(os.Stderr, "nixlayer: NOT VERIFIED: the result stays outside the Nix store because %s.\n", res.WhyNotVerified())
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
func printProgress(w io.Writer, c *common) func(events.Event) {
	if c.progressJSON() {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return func(ev events.Event) { enc.Encode(ev) }
	}
	var stop context.CancelFunc
	heartbeat := func(ev events.Event) {
		var ctx context.Context
		ctx, stop = context.WithCancel(context.Background())
		t0 := time.Now()
		go poll.Every(ctx, 30*time.Second, func() bool {
			fmt.Fprintf(w, "nixlayer: %s\n", ev.StillRunning(time.Since(t0)))
			return false
		})
	}
	return func(ev events.Event) {
		if stop != nil {
			stop()
			stop = nil
		}
		if ev.Kind == events.EventStart {
			heartbeat(ev)
		}
		if text := ev.Text(); text != "" {
			fmt.Fprintf(w, "nixlayer: %s\n", text)
		}
	}
}

// progressJSON: --progress=json (or --progress json) asks for JSON
// lines, one event each; text is the default.
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

func round(d time.Duration) string { return events.Duration(d) }

func cmdPlan(ctx context.Context, args []string) error {
	c, drvPath, svc, err := parseAndOpen(ctx, args)
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
		case planner.StatusCached:
			fmt.Printf("  ✓ %-20s cached   layer %s, %s, built in %s\n", ph.Name, layers.Short(ph.Layer.ID), layers.FormatSize(ph.Layer.Size), round(ph.Layer.Duration))
		case planner.StatusForced:
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
		switch {
		case how != "":
		case p.Exactness != nil && !p.Exactness.Exact:
			how = "but the result would not be exact (" + p.Exactness.Summary + "); it stays outside the store unless --exact, which rebuilds from " + p.Exactness.RebuildFrom
		case p.Exactness != nil:
			how = "with the learned path map; the bytes it cannot explain are judged on the outputs (" + p.Exactness.Summary + ")"
		default:
			how = "but not exactly (" + strings.TrimPrefix(p.RewriteMap, "inexact: ") + "); the result stays outside the store unless --exact"
		}
		fmt.Printf("  reused layers will be rewritten for the new output path %s: %s\n", how, strings.Join(pairs, ", "))
	}
	return nil
}

func cmdVerify(ctx context.Context, args []string) error {
	c, drvPath, svc, err := parseAndOpen(ctx, args)
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
	} else {
		if ex := v.Exactness; ex != nil {
			word := "exact"
			if !ex.Exact {
				word = "NOT exact"
			}
			fmt.Printf("nixlayer's verdict on the resumed outputs: %s (rule %s): %s\n", word, ex.Rule, ex.Summary)
			for _, f := range ex.Findings {
				fmt.Printf("  %s [%s]: %s%s\n", f.File, f.Rule, f.Why, f.Reach())
			}
		}
		if v.Identical {
			for _, name := range slices.Sorted(maps.Keys(v.Layered)) {
				fmt.Printf("%s: identical to Nix's build (%s)\n", name, v.NARHash[name])
			}
		} else {
			for _, d := range v.Differences {
				fmt.Printf("%s: %s: %s\n", d.Output, d.Path, d.Why)
			}
		}
	}
	if !v.Identical {
		return fmt.Errorf("the layered result of %s differs from Nix's build in %d file(s)", drvPath, len(v.Differences))
	}
	return nil
}

func cmdLearn(ctx context.Context, args []string) error {
	c, err := parseCommand("learn", args)
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

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

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/runner"
)

func cmdBuild(ctx context.Context, args []string) error {
	c, err := parseArgs(args, []string{"--exact", "--no-learn"}, nil)
	if err != nil {
		return err
	}
	drvPath, e, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	logw := c.buildLog()
	link := c.outLink
	if c.noLink {
		link = ""
	}
	res, err := e.Build(ctx, drvPath, runner.BuildOptions{
		PlanOptions: runner.PlanOptions{Strict: c.strict, From: c.from},
		Log:         logw,
		Progress:    printProgress(os.Stderr),
		Deliver:     true,
		ResultLink:  link,
		Exact:       c.flags["--exact"],
	})
	if err != nil {
		return err
	}
	if len(res.Reused) == 0 && len(res.Ran) > 1 && !c.flags["--no-learn"] {
		if pid, logPath, err := e.StartBackgroundLearn(drvPath); err == nil {
			fmt.Fprintf(os.Stderr, "nixlayer: learning the output-path map in the background (pid %d, log %s)\n", pid, logPath)
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

// printProgress reports phases on w as they start, are skipped and finish,
// with a heartbeat for long phases (the log may be hidden with -Q).
func printProgress(w io.Writer) func(runner.Event) {
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
					fmt.Fprintf(w, "nixlayer: [%d/%d] %-18s still running (%s)\n", ev.Index, ev.Total, ev.Phase, round(time.Since(t0)))
				}
			}
		}(stop, time.Now())
	}
	return func(ev runner.Event) {
		if stop != nil && ev.Kind != "start" {
			close(stop)
			stop = nil
		}
		if ev.Kind == "start" {
			heartbeat(ev)
		}
		switch ev.Kind {
		case "plan":
			fmt.Fprintf(w, "nixlayer: %s\n", ev.Message)
		case "cached":
			fmt.Fprintf(w, "nixlayer: [%d/%d] %-18s cached (took %s when built)\n", ev.Index, ev.Total, ev.Phase, round(ev.Elapsed))
		case "start":
			why := ""
			if !strings.HasPrefix(ev.Message, "follows ") { // the first phase to run says why
				why = ": " + ev.Message
			}
			fmt.Fprintf(w, "nixlayer: [%d/%d] %-18s running%s\n", ev.Index, ev.Total, ev.Phase, why)
		case "done":
			fmt.Fprintf(w, "nixlayer: [%d/%d] %-18s done in %s\n", ev.Index, ev.Total, ev.Phase, round(ev.Elapsed))
		case "failed":
			fmt.Fprintf(w, "nixlayer: [%d/%d] %-18s FAILED after %s\n", ev.Index, ev.Total, ev.Phase, round(ev.Elapsed))
		case "rewrite", "learn", "learned", "fallback", "repair", "wait", "gc", "pull", "pulled", "push", "pushed":
			fmt.Fprintf(w, "nixlayer: %s\n", ev.Message)
		case "warning":
			fmt.Fprintf(w, "nixlayer: warning: %s\n", ev.Message)
		case "deliver", "finished":
			if ev.Kind == "finished" {
				fmt.Fprintf(w, "nixlayer: finished in %s\n", round(ev.Elapsed))
			} else {
				fmt.Fprintf(w, "nixlayer: %s\n", ev.Message)
			}
		}
	}
}

func round(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(100 * time.Millisecond).String()
}

func cmdPlan(ctx context.Context, args []string) error {
	c, err := parseArgs(args, nil, nil)
	if err != nil {
		return err
	}
	drvPath, e, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	p, err := e.Plan(ctx, drvPath, runner.PlanOptions{Strict: c.strict, From: c.from, Log: os.Stderr})
	if err != nil {
		return err
	}
	nixBuilt := builtByNix(e.CacheDir(), p) // builds Nix ran itself (builds.go)
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
	drvPath, e, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	logw := c.buildLog()
	v, err := e.Verify(ctx, drvPath, logw)
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
	c, err := parseArgs(args, nil, nil)
	if err != nil {
		return err
	}
	drvPath, e, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	return e.Learn(ctx, drvPath, printProgress(os.Stderr))
}

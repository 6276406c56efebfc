package render

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/runner"
	"github.com/nixlayer/nixlayer/verify"
)

// Built says where a build's result is (the outputs on out), and how far
// it is verified (on notice).
func Built(out, notice io.Writer, res *runner.Result) {
	switch res.State {
	case events.StateProvisional:
		fmt.Fprintf(notice, "nixlayer: PROVISIONAL: the result stays in the cache until it is verified in the background (nixlayer status): %s.\n", res.Why)
		if res.Exactness != nil && !res.Exactness.Exact {
			fmt.Fprintf(notice, "nixlayer: not exact because %s.\n", res.WhyNotVerified())
		}
	case events.StateUnverified:
		fmt.Fprintf(notice, "nixlayer: NOT VERIFIED: the result stays outside the Nix store because %s.\n", res.WhyNotVerified())
	}
	for _, name := range slices.Sorted(maps.Keys(res.Outputs)) {
		fmt.Fprintln(out, res.Outputs[name])
	}
}

// Progress reports a build's events on w: as text, with a heartbeat for
// long phases (the log may be hidden with -Q), or asJSON as JSON lines,
// one event each, for programs and tests.
func Progress(w io.Writer, asJSON bool) func(events.Event) {
	if asJSON {
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

// Plan is `nixlayer plan`: every phase cached (with its layer) or to run
// and why, a build Nix made itself, and how reused layers are rewritten.
func Plan(w io.Writer, p *planner.Plan, nixBuilt *NixBuildNote) {
	fmt.Fprintf(w, "%s  (%s)\n", p.Name, p.Drv)
	if nixBuilt != nil {
		fmt.Fprintf(w, "  %s\n", nixBuilt.text())
	}
	if p.Whole {
		fmt.Fprintf(w, "  built as one layer: %s\n", p.WhyWhole)
	}
	for _, ph := range p.Phases {
		switch ph.Status {
		case planner.StatusCached:
			fmt.Fprintf(w, "  ✓ %-20s cached   layer %s, %s, built in %s\n", ph.Name, layers.Short(ph.Layer.ID), layers.FormatSize(ph.Layer.Size), round(ph.Layer.Duration))
		case planner.StatusForced:
			fmt.Fprintf(w, "  ! %-20s forced   layer %s: %s\n", ph.Name, layers.Short(ph.Layer.ID), ph.Reason)
		default:
			fmt.Fprintf(w, "  ▶ %-20s run      %s\n", ph.Name, ph.Reason)
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
		fmt.Fprintf(w, "  reused layers will be rewritten for the new output path %s: %s\n", how, strings.Join(pairs, ", "))
	}
}

// Verify is `nixlayer verify`: nixlayer's verdict on resumed outputs,
// then each output identical to Nix's build or every file that differs.
func Verify(w io.Writer, v *verify.Verification) {
	if ex := v.Exactness; ex != nil {
		word := "exact"
		if !ex.Exact {
			word = "NOT exact"
		}
		fmt.Fprintf(w, "nixlayer's verdict on the resumed outputs: %s (rule %s): %s\n", word, ex.Rule, ex.Summary)
		for _, f := range ex.Findings {
			fmt.Fprintf(w, "  %s [%s]: %s%s\n", f.File, f.Rule, f.Why, f.Reach())
		}
	}
	if v.Identical {
		for _, name := range slices.Sorted(maps.Keys(v.Layered)) {
			fmt.Fprintf(w, "%s: identical to Nix's build (%s)\n", name, v.NARHash[name])
		}
	} else {
		for _, d := range v.Differences {
			fmt.Fprintf(w, "%s: %s: %s\n", d.Output, d.Path, d.Why)
		}
	}
}

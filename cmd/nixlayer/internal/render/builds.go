package render

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/planner"
)

// Builds Nix ran itself, as recorded by pre-/post-build-hook in the build
// index (package buildindex), in `plan` and `ls`.

// NixBuildNote is what plan says about a build of the derivation that Nix
// made itself.
type NixBuildNote struct {
	*buildindex.Build
	// NoLayers: no phase of the plan is cached, so the next layered build
	// of this derivation runs every phase.
	NoLayers bool `json:"noLayers"`
}

// PlanWithIndex is `plan --json`: the runner's plan plus BuiltByNix.
type PlanWithIndex struct {
	*planner.Plan
	BuiltByNix *NixBuildNote `json:"builtByNix,omitempty"`
}

// BuiltByNix is the newest build of the plan's derivation that Nix made
// itself, as the engine found it in the build index.
func BuiltByNix(pr *api.PlanResult) *NixBuildNote {
	if pr.BuiltByNix == nil {
		return nil
	}
	n := &NixBuildNote{Build: pr.BuiltByNix, NoLayers: true}
	for _, ph := range pr.Phases {
		if ph.Layer != nil {
			n.NoLayers = false
		}
	}
	return n
}

// text is plan's line, e.g. "built by Nix at 2024-05-01 12:00:03 in 12.3s
// (no layers: next build is cold)".
func (n *NixBuildNote) text() string {
	s := "built by Nix at " + n.End.Local().Format("2006-01-02 15:04:05")
	if n.Duration > 0 {
		s += " in " + round(n.Duration)
	}
	if n.NoLayers {
		s += " (no layers: next build is cold)"
	}
	return s
}

// printBuilds is ls's section for the build index.
func printBuilds(w io.Writer, bs []buildindex.Build) {
	fmt.Fprintln(w, "Builds recorded through Nix (pre-/post-build-hook and the build hook):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DERIVATION\tBY\tSTATUS\tSTARTED\tENDED\tTOOK\tOUTPUTS\t")
	for _, b := range bs {
		took := "-"
		if b.Duration > 0 {
			took = round(b.Duration)
		}
		status := b.Status
		if status == buildindex.StatusUnfinished {
			status = "unfinished (running, or failed under Nix)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", b.Drv, b.By, status, clock(b.Start), clock(b.End), took, outputList(b.Outputs))
	}
	tw.Flush()
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func outputList(outs map[string]string) string {
	if len(outs) == 0 {
		return "-"
	}
	names := make([]string, 0, len(outs))
	for n := range outs {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, n+"="+outs[n])
	}
	return strings.Join(parts, " ")
}

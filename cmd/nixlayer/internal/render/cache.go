package render

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
)

// What the cache holds and what moved in and out of it: ls, gc, export,
// import, push, pull.

// List is `nixlayer ls`: the layers' table on out (or a notice that there
// are none), then the builds of the build index.
func List(out, notice io.Writer, rows []inspect.LayerRow, builds []buildindex.Build) {
	if len(rows) == 0 {
		fmt.Fprintln(notice, "nixlayer: no layers in the cache")
	} else {
		printLayers(out, rows)
	}
	if len(builds) > 0 {
		if len(rows) > 0 {
			fmt.Fprintln(out)
		}
		printBuilds(out, builds)
	}
}

func printLayers(w io.Writer, rows []inspect.LayerRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tPHASE\tSTATUS\tLAYER\tKEY\tOWN\tSHARED\tAGE\tTOOK\t")
	var total int64
	for _, r := range rows {
		phase, key, status := r.Phase, "-", r.Status
		if r.Kind != layers.KindPhase {
			phase = "(" + string(r.Kind) + ")"
		}
		if len(r.Key) >= 12 {
			key = r.Key[:12]
		}
		if r.Mounted > 0 {
			status += ",mounted"
		}
		if !r.Verified {
			status += ",unverified"
		}
		took := "-"
		if r.Duration > 0 {
			took = round(r.Duration)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Package, phase, status, layers.Short(r.ID), key, layers.FormatSize(r.Size), layers.FormatSize(r.Shared), age(r.Created), took)
		if r.Size > 0 {
			total += r.Size
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d layers, %s\n", len(rows), layers.FormatSize(total))
}

// age is how long ago t was, as ls shows it (3s, 5m, 2h, 4d).
func age(t time.Time) string {
	return events.Age(time.Since(t), events.AgeUnits{"s", "m", "h", "d"})
}

// GC is gc's summary: what was (or would be) removed and freed, what was
// kept and left in use.
func GC(w io.Writer, res *gc.Result) {
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(w, "%s %d layers, freed %s (%d bytes); kept %d layers (%s)\n", verb, len(res.Removed), layers.FormatSize(res.Freed), res.Freed, res.Kept, layers.FormatSize(res.KeptBytes))
	if len(res.InUse) > 0 {
		fmt.Fprintf(w, "left %d layers in use by a running build, a shell or a mount\n", len(res.InUse))
	}
}

// Exported says what an export wrote, and who signed it.
func Exported(w io.Writer, res *api.ExportResult) {
	fmt.Fprintf(w, "nixlayer: exported %d layers of %s (up to %s, %s compressed, %s) as oci:%s:%s\n", len(res.Layers), res.Selection.Name, res.Selection.Phase, layers.FormatSize(res.Bytes), signedBy(res.SignedBy), res.Dir, res.Ref)
}

// Imported says what each imported chain added, and whether it is
// trusted.
func Imported(w io.Writer, res []layercache.ImportResult) {
	for _, r := range res {
		trust := "signed by " + r.SignedBy
		if !r.Verified {
			trust = "NOT VERIFIED (" + r.Untrusted + "): results resting on them stay out of the Nix store"
		}
		fmt.Fprintf(w, "nixlayer: imported %s: %d layers new, %d already cached; %s\n", r.Ref, r.Created, r.Reused, trust)
	}
}

// Pushed says what a push sent, and who signed it.
func Pushed(w io.Writer, res *api.PushResult) {
	fmt.Fprintf(w, "nixlayer: pushed %d layers of %s (up to %s, %s) to %s: %d blobs sent (%s), %d already there; %s\n",
		len(res.Blobs), res.Selection.Name, res.Selection.Phase, layers.FormatSize(res.LayerBytes), res.Target, res.BlobsSent, layers.FormatSize(res.Uploaded), res.BlobsSkipped, signedBy(res.SignedBy))
}

// Pulled says when a pull had nothing to fetch (progress told the rest).
func Pulled(w io.Writer, rep *layercache.PullReport) {
	if rep.Layers == 0 {
		fmt.Fprintf(w, "nixlayer: nothing to pull: the cache holds %s already\n", orAll(rep.Phases))
	}
}

func orAll(phases []string) string {
	if len(phases) == 0 {
		return "every phase"
	}
	return phases[0] + "…" + phases[len(phases)-1]
}

// signedBy says who signed a pushed or exported chain.
func signedBy(key string) string {
	if key == "" {
		return "UNSIGNED (pulls refuse it without --no-check-sigs; set secretKeyFile in config.json or --sign-key)"
	}
	return "signed by " + key
}

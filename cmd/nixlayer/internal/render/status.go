package render

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/results"
)

// StatusReport is what `nixlayer status --json` prints: the engine (where
// it runs, its cache, what the caller may do) and the results' states.
type StatusReport struct {
	*api.Status
	Results    []*results.Record `json:"results"`
	Background []results.Job     `json:"background"`
}

// Status is `nixlayer status`: the engine, the background work, and
// each result's state (provisional, verifying, verified, replaced or
// unverified) with why.
func Status(w io.Writer, rep StatusReport) {
	printEngine(w, rep.Status)
	for _, j := range rep.Background {
		fmt.Fprintf(w, "background: %s (pid %d, for %s): %s\n", j.Package, j.PID, round(time.Since(j.Started)), cmp.Or(j.Why, "learning and verifying"))
		if j.Doing != "" {
			fmt.Fprintf(w, "            now %s\n", j.Doing)
		}
	}
	if len(rep.Results) == 0 {
		fmt.Fprintln(w, "results:  none recorded")
		return
	}
	fmt.Fprintln(w, "results (newest first):")
	for _, r := range rep.Results {
		fmt.Fprintf(w, "  %-11s %s (built %s ago)\n", r.State, r.Name, round(time.Since(r.Built)))
		fmt.Fprintf(w, "              %s\n", r.Why)
		printAudit(w, r.Audit)
		for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
			fmt.Fprintf(w, "              %s: %s\n", name, strings.TrimSpace(r.Outputs[name]))
		}
	}
}

// printEngine says where the engine runs and what the caller may do.
func printEngine(w io.Writer, st *api.Status) {
	where := "in this process (root)"
	if st.Engine == "daemon" {
		where = "nixlayer daemon at " + st.Socket
	}
	fmt.Fprintf(w, "engine:   %s\n", where)
	fmt.Fprintf(w, "cache:    %s (%s, %d layers)\n", st.CacheDir, st.Driver, st.Layers)
	trust := "may build, plan, learn, verify, inspect and open shells"
	if st.Trusted {
		trust += "; trusted: may also gc and import"
	}
	fmt.Fprintf(w, "user:     %s (uid %d): %s\n", st.User, st.UID, trust)
	fmt.Fprintf(w, "results:  %s (results that stay outside the Nix store)\n", st.ResultsDir)
	if st.NotReady != "" {
		fmt.Fprintf(w, "builds:   CANNOT RUN HERE: %s\n", st.NotReady)
	} else {
		fmt.Fprintf(w, "builds:   can run here (bubblewrap, cache, disk space)\n")
	}
}

// printAudit says where a result's audit stands; a failed one lists what
// it found, loudly.
func printAudit(w io.Writer, a *results.Audit) {
	switch {
	case a == nil:
		return
	case a.State == results.AuditDue:
		fmt.Fprintf(w, "              audit: due (a clean build from scratch in the background compares it)\n")
		return
	case a.State != results.AuditFailed:
		fmt.Fprintf(w, "              audit: %s in %s: %s\n", a.State, round(a.Took), a.Why)
		return
	}
	fmt.Fprintf(w, "              AUDIT FAILED: a clean build differs; the result was replaced by it\n")
	for _, f := range a.Files {
		fmt.Fprintf(w, "                differs: %s/%s (%s)\n", f.Output, f.Path, f.Why)
	}
	if len(a.Phases) > 0 {
		fmt.Fprintf(w, "                phases whose layer differs: %s\n", strings.Join(a.Phases, " "))
	}
	if len(a.Attrs) > 0 {
		fmt.Fprintf(w, "                attributes changed between the chains: %s\n", strings.Join(a.Attrs, " "))
	}
	fmt.Fprintf(w, "                stale layers dropped (never reused): %d\n", len(a.Dropped))
}

package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/results"
)

// statusReport is what `nixlayer status --json` prints: the engine (where
// it runs, its cache, what the caller may do) and the results' states.
type statusReport struct {
	*api.Status
	Results    []*results.Record `json:"results"`
	Background []results.Job     `json:"background"`
}

// cmdStatus describes the engine and lists the results nixlayer built and
// where each stands: provisional (delivered at once, verified in the
// background), verifying, verified, replaced, or unverified; with why. A
// package (FILE -A ATTR, a .drv) or a NAME narrows the list.
func cmdStatus(ctx context.Context, args []string) error {
	var c *common
	var pos []string
	hasPkg := slices.ContainsFunc(args, func(a string) bool { return commonFlags[a].pkg })
	var err error
	if hasPkg { // FILE -A ATTR …, named as for build
		c, err = parseArgs(args, nil, nil)
	} else {
		c, pos, hasPkg, err = inspectArgs(args, nil, nil)
	}
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("nixlayer status [PACKAGE | NAME] [--json]")
	}
	var req api.ResultsRequest
	if hasPkg {
		drv, err := c.drvPath(ctx)
		if err != nil {
			return err
		}
		req.Drvs = []string{drv}
	}
	svc, err := c.service(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	st, err := svc.Status(ctx)
	if err != nil {
		return err
	}
	rr, err := svc.Results(ctx, req)
	if err != nil {
		return err
	}
	rep := statusReport{Status: st, Results: []*results.Record{}, Background: rr.Background}
	for _, r := range rr.Results {
		if len(pos) == 0 || r.Name == pos[0] || r.Package == pos[0] {
			rep.Results = append(rep.Results, r)
		}
	}
	if c.json {
		return printJSON(rep)
	}
	printEngine(st)
	for _, j := range rep.Background {
		fmt.Printf("background: %s (pid %d, for %s): %s\n", j.Package, j.PID, round(time.Since(j.Started)), cmp.Or(j.Why, "learning and verifying"))
		if j.Doing != "" {
			fmt.Printf("            now %s\n", j.Doing)
		}
	}
	if len(rep.Results) == 0 {
		fmt.Println("results:  none recorded")
		return nil
	}
	fmt.Println("results (newest first):")
	for _, r := range rep.Results {
		fmt.Printf("  %-11s %s (built %s ago)\n", r.State, r.Name, round(time.Since(r.Built)))
		fmt.Printf("              %s\n", r.Why)
		printAudit(r.Audit)
		for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
			fmt.Printf("              %s: %s\n", name, strings.TrimSpace(r.Outputs[name]))
		}
	}
	return nil
}

// printEngine says where the engine runs and what the caller may do.
func printEngine(st *api.Status) {
	where := "in this process (root)"
	if st.Engine == "daemon" {
		where = "nixlayer daemon at " + st.Socket
	}
	fmt.Printf("engine:   %s\n", where)
	fmt.Printf("cache:    %s (%s, %d layers)\n", st.CacheDir, st.Driver, st.Layers)
	trust := "may build, plan, learn, verify, inspect and open shells"
	if st.Trusted {
		trust += "; trusted: may also gc and import"
	}
	fmt.Printf("user:     %s (uid %d): %s\n", st.User, st.UID, trust)
	fmt.Printf("results:  %s (results that stay outside the Nix store)\n", st.ResultsDir)
	if st.NotReady != "" {
		fmt.Printf("builds:   CANNOT RUN HERE: %s\n", st.NotReady)
	} else {
		fmt.Printf("builds:   can run here (bubblewrap, cache, disk space)\n")
	}
}

// printAudit says where a result's audit stands; a failed one lists what
// it found, loudly.
func printAudit(a *results.Audit) {
	switch {
	case a == nil:
		return
	case a.State == results.AuditDue:
		fmt.Printf("              audit: due (a clean build from scratch in the background compares it)\n")
		return
	case a.State != results.AuditFailed:
		fmt.Printf("              audit: %s in %s: %s\n", a.State, round(a.Took), a.Why)
		return
	}
	fmt.Printf("              AUDIT FAILED: a clean build differs; the result was replaced by it\n")
	for _, f := range a.Files {
		fmt.Printf("                differs: %s/%s (%s)\n", f.Output, f.Path, f.Why)
	}
	if len(a.Phases) > 0 {
		fmt.Printf("                phases whose layer differs: %s\n", strings.Join(a.Phases, " "))
	}
	if len(a.Attrs) > 0 {
		fmt.Printf("                attributes changed between the chains: %s\n", strings.Join(a.Attrs, " "))
	}
	fmt.Printf("                stale layers dropped (never reused): %d\n", len(a.Dropped))
}

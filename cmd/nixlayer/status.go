package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/runner"
)

// statusReport is what `nixlayer status --json` prints.
type statusReport struct {
	Results    []*runner.ResultRecord `json:"results"`
	Background []runner.BackgroundJob `json:"background"`
}

// cmdStatus lists the results nixlayer built and where each stands:
// provisional (delivered at once, verified in the background), verifying,
// verified, replaced, or unverified; with why.
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
		return fmt.Errorf("usage: nixlayer status [PACKAGE | NAME] [--json]")
	}
	drv := ""
	if hasPkg {
		if drv, err = c.drvPath(ctx); err != nil {
			return err
		}
	}
	cache := c.cacheDir
	if cache == "" {
		cache = runner.DefaultCacheDir()
	}
	all, err := runner.Results(cache)
	if err != nil {
		return err
	}
	recs := []*runner.ResultRecord{}
	for _, r := range all {
		if (drv == "" || r.Drv == drv) && (len(pos) == 0 || r.Name == pos[0] || r.Package == pos[0]) {
			recs = append(recs, r)
		}
	}
	jobs := runner.BackgroundJobs(cache)
	if c.json {
		if jobs == nil {
			jobs = []runner.BackgroundJob{}
		}
		return printJSON(statusReport{Results: recs, Background: jobs})
	}
	for _, j := range jobs {
		fmt.Printf("background: learning and verifying %s (pid %d, for %s)\n", j.Package, j.PID, round(time.Since(j.Started)))
	}
	if len(recs) == 0 {
		fmt.Println("no results recorded")
		return nil
	}
	for _, r := range recs {
		fmt.Printf("%-11s %s (built %s ago)\n", r.State, r.Name, round(time.Since(r.Built)))
		fmt.Printf("            %s\n", r.Why)
		for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
			fmt.Printf("            %s: %s\n", name, strings.TrimSpace(r.Outputs[name]))
		}
	}
	return nil
}

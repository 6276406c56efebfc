package main

import (
	"context"
	"os"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/render"
	"github.com/nixlayer/nixlayer/results"
)

// cmdStatus describes the engine and lists the results nixlayer built and
// where each stands: provisional (delivered at once, verified in the
// background), verifying, verified, replaced, or unverified; with why. A
// package (FILE -A ATTR, a .drv) or a NAME narrows the list.
func cmdStatus(ctx context.Context, args []string) error {
	var c *common
	var pos []string
	hasPkg := cmdline.NamesPackage(args)
	var err error
	if hasPkg { // FILE -A ATTR …, named as for build
		c, err = parseArgs(args)
	} else {
		c, pos, hasPkg, err = inspectCommand("status", args)
	}
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return cmdline.Usagef("nixlayer status [PACKAGE | NAME] [--json]")
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
	rep := render.StatusReport{Status: st, Results: []*results.Record{}, Background: rr.Background}
	for _, r := range rr.Results {
		if len(pos) == 0 || r.Name == pos[0] || r.Package == pos[0] {
			rep.Results = append(rep.Results, r)
		}
	}
	if c.JSON {
		return printJSON(rep)
	}
	render.Status(os.Stdout, rep)
	return nil
}

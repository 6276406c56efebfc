package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/render"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

func cmdBuild(ctx context.Context, args []string) error {
	c, err := parseCommand("build", args)
	if err != nil {
		return err
	}
	if err := c.CheckProgress(); err != nil {
		return err
	}
	drvPath, err := c.drvPath(ctx)
	if err != nil {
		return err
	}
	link := c.OutLink
	if c.NoLink {
		link = ""
	}
	if c.From == "" && !c.registry().Restricted() {
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
		DrvPath: drvPath, Strict: c.Strict, From: c.From, Exact: c.Flags["--exact"], NoLearn: c.Flags["--no-learn"], ResultLink: link,
		Registry: c.registry(),
	}, api.Output{Log: c.buildLog(), Progress: render.Progress(os.Stderr, c.ProgressJSON())})
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
	if c.JSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	render.Built(os.Stdout, os.Stderr, res)
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

func cmdPlan(ctx context.Context, args []string) error {
	c, drvPath, svc, err := parseAndOpen(ctx, args)
	if err != nil {
		return err
	}
	defer svc.Close()
	pr, err := svc.Plan(ctx, api.PlanRequest{DrvPath: drvPath, Strict: c.Strict, From: c.From}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	nixBuilt := render.BuiltByNix(pr) // builds Nix ran itself
	if c.JSON {
		return printJSON(render.PlanWithIndex{Plan: pr.Plan, BuiltByNix: nixBuilt})
	}
	render.Plan(os.Stdout, pr.Plan, nixBuilt)
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
	if c.JSON {
		if err := printJSON(v); err != nil {
			return err
		}
	} else {
		render.Verify(os.Stdout, v)
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
	if err := c.CheckProgress(); err != nil {
		return err
	}
	drvPath, svc, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	return svc.Learn(ctx, api.LearnRequest{DrvPath: drvPath, Registry: c.registry()}, api.Output{Progress: render.Progress(os.Stderr, c.ProgressJSON())})
}

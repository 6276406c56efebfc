package main

import (
	"context"
	"os"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/render"
)

// registryCommand reads the line of push or pull: the REF first, then
// the package (default.nix when none is named) and the flags.
func registryCommand(name, usage string, args []string) (*common, string, error) {
	_, valued := commands.OwnFlags(name)
	ref, args, err := cmdline.RegistryRef(args, valued, usage)
	if err != nil {
		return nil, "", err
	}
	c, pos, _, err := inspectCommand(name, args)
	if err != nil {
		return nil, "", err
	}
	if len(pos) != 0 {
		return nil, "", cmdline.Usagef("%s", usage)
	}
	return c, ref, nil
}

// nixlayer push REF [PKG] [--at PHASE] [--sign-key FILE]
func cmdPush(ctx context.Context, args []string) error {
	c, ref, err := registryCommand("push", "nixlayer push REGISTRY/REPO[:TAG] [PACKAGE] [--at PHASE] [--sign-key FILE]", args)
	if err != nil {
		return err
	}
	key, p, svc, err := c.signedPkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.Push(ctx, api.PushRequest{DrvPath: p.DrvPath, At: c.Value("--at"), Ref: ref, SecretKey: key, Registry: c.registry()}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	note(res.Selection.Note)
	if c.JSON {
		return printJSON(res.PushReport)
	}
	render.Pushed(os.Stderr, res)
	return nil
}

// nixlayer pull REF [PKG]
func cmdPull(ctx context.Context, args []string) error {
	c, ref, err := registryCommand("pull", "nixlayer pull REGISTRY/REPO[:TAG] [PACKAGE]", args)
	if err != nil {
		return err
	}
	p, svc, err := c.pkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	rep, err := svc.Pull(ctx, api.PullRequest{DrvPath: p.DrvPath, Ref: ref, Registry: c.registry()}, api.Output{Log: os.Stderr, Progress: render.Progress(os.Stderr, c.ProgressJSON())})
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(rep)
	}
	render.Pulled(os.Stderr, rep)
	return nil
}

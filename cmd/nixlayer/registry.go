package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/runner"
)

// nixlayer push REF [PKG] [--at PHASE] [--sign-key FILE]
func cmdPush(ctx context.Context, args []string) error {
	c, pos, _, err := inspectArgs(args, nil, []string{"--at", "--sign-key"})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: nixlayer push REGISTRY/REPO[:TAG] [PACKAGE] [--at PHASE] [--sign-key FILE]")
	}
	sel, e, err := c.selectChain(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := e.Push(ctx, sel.Layer.ID, pos[0], runner.PushOptions{KeyFile: c.value("--sign-key")})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(rep)
	}
	signed := "UNSIGNED (pulls refuse it without --no-check-sigs; set secretKeyFile or --sign-key)"
	if rep.SignedBy != "" {
		signed = "signed by " + rep.SignedBy
	}
	fmt.Fprintf(os.Stderr, "nixlayer: pushed %d layers of %s (up to %s, %s) to %s: %d blobs sent (%s), %d already there; %s\n",
		len(rep.Blobs), sel.Layer.Meta.DrvName, sel.Phase, layers.FormatSize(rep.LayerBytes), rep.Target, rep.BlobsSent, layers.FormatSize(rep.Uploaded), rep.BlobsSkipped, signed)
	return nil
}

// nixlayer pull REF PKG
func cmdPull(ctx context.Context, args []string) error {
	c, pos, _, err := inspectArgs(args, nil, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: nixlayer pull REGISTRY/REPO[:TAG] PACKAGE")
	}
	p, e, err := c.openPkg(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := e.Pull(ctx, p.DrvPath, pos[0], printProgress(os.Stderr))
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(rep)
	}
	if rep.Layers == 0 {
		fmt.Fprintf(os.Stderr, "nixlayer: nothing to pull: the cache holds %s already\n", orAll(rep.Phases))
	}
	return nil
}

func orAll(phases []string) string {
	if len(phases) == 0 {
		return "every phase"
	}
	return phases[0] + "…" + phases[len(phases)-1]
}

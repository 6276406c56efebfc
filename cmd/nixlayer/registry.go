package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/layers"
)

// registryRef takes the REF of a push or pull out of its arguments: the
// first argument that is neither a flag nor a flag's value (the package,
// if any, follows it).
func registryRef(args, valueFlags []string, usage string) (string, []string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if f, ok := commonFlags[a]; ok {
			i += f.values()
			continue
		}
		if slices.Contains(valueFlags, a) {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		return a, append(slices.Clone(args[:i]), args[i+1:]...), nil
	}
	return "", nil, usagef("%s", usage)
}

// nixlayer push REF [PKG] [--at PHASE] [--sign-key FILE]
func cmdPush(ctx context.Context, args []string) error {
	const usage = "nixlayer push REGISTRY/REPO[:TAG] [PACKAGE] [--at PHASE] [--sign-key FILE]"
	switches, valued := ownFlags("push")
	ref, args, err := registryRef(args, valued, usage)
	if err != nil {
		return err
	}
	c, pos, _, err := inspectArgs(args, switches, valued)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("%s", usage)
	}
	key, p, svc, err := c.signedPkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.Push(ctx, api.PushRequest{DrvPath: p.DrvPath, At: c.value("--at"), Ref: ref, SecretKey: key, Registry: c.registry()}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	note(res.Selection.Note)
	if c.json {
		return printJSON(res.PushReport)
	}
	fmt.Fprintf(os.Stderr, "nixlayer: pushed %d layers of %s (up to %s, %s) to %s: %d blobs sent (%s), %d already there; %s\n",
		len(res.Blobs), res.Selection.Name, res.Selection.Phase, layers.FormatSize(res.LayerBytes), res.Target, res.BlobsSent, layers.FormatSize(res.Uploaded), res.BlobsSkipped, signedBy(res.SignedBy))
	return nil
}

// nixlayer pull REF [PKG]
func cmdPull(ctx context.Context, args []string) error {
	const usage = "nixlayer pull REGISTRY/REPO[:TAG] [PACKAGE]"
	switches, valued := ownFlags("pull")
	ref, args, err := registryRef(args, valued, usage)
	if err != nil {
		return err
	}
	c, pos, _, err := inspectArgs(args, switches, valued)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("%s", usage)
	}
	p, svc, err := c.pkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	rep, err := svc.Pull(ctx, api.PullRequest{DrvPath: p.DrvPath, Ref: ref, Registry: c.registry()}, api.Output{Log: os.Stderr, Progress: printProgress(os.Stderr, c)})
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

// signedBy says who signed a pushed or exported chain.
func signedBy(key string) string {
	if key == "" {
		return "UNSIGNED (pulls refuse it without --no-check-sigs; set secretKeyFile in config.json or --sign-key)"
	}
	return "signed by " + key
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/render"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layers"
)

// Inspection commands (issue 8): shell, mount, umount, ls, log, gc,
// export, import. Each takes the package like nixlayer build does.

// note tells the user when the chain taken is not the current
// derivation's (inspect.Selected.Note).
func note(text string) { render.Note(os.Stderr, text) }

// nixlayer shell [PKG] --at PHASE|failed|LAYER [--keep]
func cmdShell(ctx context.Context, args []string) error {
	c, pos, _, err := inspectCommand("shell", args)
	if err != nil {
		return err
	}
	at := c.Value("--at")
	if at == "" && len(pos) > 0 {
		at, pos = pos[0], pos[1:]
	}
	if len(pos) > 0 || at == "" {
		return cmdline.Usagef("nixlayer shell [PACKAGE] --at PHASE|failed [--keep]")
	}
	p, svc, err := c.pkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.Shell(ctx, api.ShellRequest{DrvPath: p.DrvPath, At: at, Keep: c.Flags["--keep"]}, api.Terminal{In: os.Stdin, Out: os.Stdout, Notice: os.Stderr})
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	return nil
}

// nixlayer mount [PKG] PHASE [DIR]; without PHASE: list mounts.
func cmdMount(ctx context.Context, args []string) error {
	c, pos, _, err := inspectCommand("mount", args)
	if err != nil {
		return err
	}
	at := c.Value("--at")
	if at == "" && len(pos) > 0 {
		at, pos = pos[0], pos[1:]
	}
	if len(pos) > 1 {
		return cmdline.Usagef("nixlayer mount [PACKAGE] PHASE [DIR]")
	}
	l, err := c.local()
	if err != nil {
		return err
	}
	defer l.Close()
	if at == "" {
		ms, err := l.Mounts()
		if err != nil {
			return err
		}
		if c.JSON {
			return printJSON(ms)
		}
		for _, m := range ms {
			fmt.Printf("%s\t%s %s (layer %s)\n", m.Dir, m.Package, m.Phase, layers.Short(m.Layer))
		}
		return nil
	}
	p, err := c.pkg(ctx)
	if err != nil {
		return err
	}
	sel, err := l.Select(ctx, p, at, os.Stderr)
	if err != nil {
		return err
	}
	note(sel.Note)
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	rec, err := l.Mount(sel, dir)
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(rec)
	}
	fmt.Fprintf(os.Stderr, "nixlayer: %s after %s mounted read-only; release it with: nixlayer umount %s\n", rec.Package, rec.Phase, rec.Dir)
	fmt.Println(rec.Dir)
	return nil
}

// nixlayer umount DIR | nixlayer umount [PKG] PHASE | nixlayer umount --all
func cmdUmount(ctx context.Context, args []string) error {
	c, pos, hasPkg, err := inspectCommand("umount", args)
	if err != nil {
		return err
	}
	l, err := c.local()
	if err != nil {
		return err
	}
	defer l.Close()
	ms, err := l.Mounts()
	if err != nil {
		return err
	}
	var dirs []string
	switch {
	case c.Flags["--all"]:
		for _, m := range ms {
			dirs = append(dirs, m.Dir)
		}
	case len(pos) != 1:
		return cmdline.Usagef("nixlayer umount DIR | nixlayer umount [PACKAGE] PHASE | nixlayer umount --all")
	default:
		abs, _ := filepath.Abs(pos[0])
		for _, m := range ms {
			if m.Dir == abs {
				dirs = append(dirs, m.Dir)
			}
		}
		if len(dirs) == 0 && !hasPkg {
			return fmt.Errorf("%s is not a nixlayer mount (nixlayer mount lists them; a phase needs the package: nixlayer umount -f FILE -A ATTR PHASE)", pos[0])
		}
		if len(dirs) == 0 {
			p, err := c.pkg(ctx)
			if err != nil {
				return fmt.Errorf("%s is not a nixlayer mount, and as a phase: %w", pos[0], err)
			}
			sel, err := l.Select(ctx, p, pos[0], os.Stderr)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Layer == sel.Layer.ID {
					dirs = append(dirs, m.Dir)
				}
			}
			if len(dirs) == 0 {
				return fmt.Errorf("the layer after %s of %s is not mounted", sel.Phase, p)
			}
		}
	}
	for _, d := range dirs {
		if err := l.Unmount(d); err != nil {
			return err
		}
		if !c.JSON {
			fmt.Fprintf(os.Stderr, "nixlayer: unmounted %s\n", d)
		}
	}
	if c.JSON {
		return printJSON(map[string]any{"unmounted": dirs})
	}
	return nil
}

// nixlayer ls [PKG | NAME] [--json [--builds]]
//
// The table has the layers, then the builds of the build index (builds Nix
// ran itself, recorded by pre-/post-build-hook, and the hook's own).
// --json prints the array of layers, as it always has; with --builds it
// prints {"layers": [...], "builds": [...]}.
func cmdLs(ctx context.Context, args []string) error {
	c, pos, hasPkg, err := inspectCommand("ls", args)
	if err != nil {
		return err
	}
	var p inspect.Package
	switch {
	case hasPkg:
		if p, err = c.pkg(ctx); err != nil {
			return err
		}
	case len(pos) == 1:
		p.Name = pos[0]
	case len(pos) > 1:
		return cmdline.Usagef("nixlayer ls [PACKAGE | NAME] [--json [--builds]]")
	}
	lr, err := query(ctx, c, api.Service.List, api.ListRequest{Package: p, Builds: true})
	if err != nil {
		return err
	}
	rows, builds := lr.Layers, lr.Builds
	if c.JSON && !c.Flags["--builds"] {
		return printJSON(rows)
	}
	if builds == nil {
		builds = []buildindex.Build{}
	}
	if c.JSON {
		return printJSON(struct {
			Layers []inspect.LayerRow `json:"layers"`
			Builds []buildindex.Build `json:"builds"`
		}{rows, builds})
	}
	render.List(os.Stdout, os.Stderr, rows, builds)
	return nil
}

// nixlayer log PKG|NAME [PHASE] [--json]
func cmdLog(ctx context.Context, args []string) error {
	c, pos, hasPkg, err := inspectCommand("log", args)
	if err != nil {
		return err
	}
	var p inspect.Package
	if hasPkg {
		if p, err = c.pkg(ctx); err != nil {
			return err
		}
	} else if len(pos) > 0 {
		p.Name, pos = pos[0], pos[1:]
	} else {
		return cmdline.Usagef("nixlayer log PACKAGE|NAME [PHASE]")
	}
	phase := ""
	if len(pos) == 1 {
		phase = pos[0]
	} else if len(pos) > 1 {
		return cmdline.Usagef("nixlayer log PACKAGE|NAME [PHASE]")
	}
	logs, err := query(ctx, c, api.Service.Log, api.LogRequest{Package: p, Phase: phase})
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(logs)
	}
	for _, l := range logs {
		os.Stdout.WriteString(l.Log)
	}
	return nil
}

// nixlayer gc [--keep-last N] [--max-size SIZE] [--older-than AGE] [--dry-run]
func cmdGC(ctx context.Context, args []string) error {
	c, pos, _, err := inspectCommand("gc", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cmdline.Usagef("nixlayer gc [--keep-last N] [--max-size SIZE] [--older-than AGE] [--dry-run]")
	}
	o := api.GCRequest{DryRun: c.Flags["--dry-run"]}
	if v := c.Value("--keep-last"); v != "" {
		if o.KeepLast, err = strconv.Atoi(v); err != nil || o.KeepLast < 1 {
			return fmt.Errorf("--keep-last needs a number ≥ 1, not %q", v)
		}
	}
	if v := c.Value("--max-size"); v != "" {
		if o.MaxSize, err = gc.ParseSize(v); err != nil {
			return fmt.Errorf("--max-size: %w", err)
		}
	}
	if v := c.Value("--older-than"); v != "" {
		if o.OlderThan, err = cmdline.ParseAge(v); err != nil {
			return fmt.Errorf("--older-than: %w", err)
		}
	}
	res, err := request(ctx, c, api.Service.GC, o, api.Output{Log: os.Stderr})
	if res != nil && c.JSON {
		if jerr := printJSON(res); jerr != nil {
			return jerr
		}
	} else if res != nil {
		render.GC(os.Stdout, res)
	}
	return err
}

// dirCommandArgs reads the command line of export and import, which name
// one directory (made absolute) besides the package and their flags.
func dirCommandArgs(args []string, name, usage string) (*common, string, error) {
	c, pos, _, err := inspectCommand(name, args)
	if err != nil {
		return nil, "", err
	}
	if len(pos) != 1 {
		return nil, "", cmdline.Usagef("%s", usage)
	}
	dir, err := filepath.Abs(pos[0])
	return c, dir, err
}

// nixlayer export PKG DIR [--at PHASE] [--tag REF] [--sign-key FILE]
func cmdExport(ctx context.Context, args []string) error {
	c, dir, err := dirCommandArgs(args, "export", "nixlayer export PACKAGE DIR [--at PHASE] [--tag REF] [--sign-key FILE]")
	if err != nil {
		return err
	}
	key, p, svc, err := c.signedPkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.Export(ctx, api.ExportRequest{DrvPath: p.DrvPath, At: c.Value("--at"), Dir: dir, Ref: c.Value("--tag"), SecretKey: key}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	note(res.Selection.Note)
	if c.JSON {
		return printJSON(res.ExportResult)
	}
	render.Exported(os.Stderr, res)
	return nil
}

// nixlayer import DIR [--tag REF]
func cmdImport(ctx context.Context, args []string) error {
	c, dir, err := dirCommandArgs(args, "import", "nixlayer import DIR [--tag REF]")
	if err != nil {
		return err
	}
	res, err := request(ctx, c, api.Service.Import, api.ImportRequest{Dir: dir, Ref: c.Value("--tag")}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	render.Imported(os.Stderr, res)
	return nil
}

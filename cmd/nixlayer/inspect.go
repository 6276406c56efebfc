package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layers"
)

// Inspection commands (issue 8): shell, mount, umount, ls, log, gc,
// export, import. Each takes the package like nixlayer build does.

// inspectArgs splits a command line into the package (as parseArgs reads
// it) and the command's positional arguments. The first positional
// argument is the package only when no -f/-E is given and it looks like
// one (a .drv, a .nix file, or a directory with default.nix). hasPkg is
// false when no package was named at all.
func inspectArgs(args, boolFlags, valueFlags []string) (c *common, pos []string, hasPkg bool, err error) {
	takes := func(a string) (int, bool) {
		if f, ok := commonFlags[a]; ok {
			return f.values(), f.values() > 0
		}
		return 1, slices.Contains(valueFlags, a)
	}
	explicit := slices.ContainsFunc(args, func(a string) bool { return commonFlags[a].pkg })
	var pkgArgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if n, ok := takes(a); ok {
			end := min(i+n+1, len(args))
			pkgArgs = append(pkgArgs, args[i:end]...)
			i = end - 1
			continue
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			pkgArgs = append(pkgArgs, a)
			continue
		}
		if !explicit && !hasPkg && len(pos) == 0 && looksLikePackage(a) {
			pkgArgs = append(pkgArgs, a)
			hasPkg = true
			continue
		}
		pos = append(pos, a)
	}
	hasPkg = hasPkg || explicit
	sentinel := !hasPkg
	if sentinel {
		pkgArgs = append(pkgArgs, "-E", "null")
	}
	c, err = parseArgs(pkgArgs, boolFlags, valueFlags)
	if err != nil {
		return nil, nil, false, err
	}
	if sentinel {
		c.target.Expr = ""
	}
	return c, pos, hasPkg, nil
}

func looksLikePackage(a string) bool {
	if strings.HasSuffix(a, ".drv") || strings.HasSuffix(a, ".nix") || isFlakeArg(a) {
		return true
	}
	fi, err := os.Stat(filepath.Join(a, "default.nix"))
	return err == nil && !fi.IsDir()
}

// pkg resolves the named package to its derivation; without one, the
// default.nix of the current directory, as nix-build does.
func (c *common) pkg(ctx context.Context) (inspect.Package, error) {
	if c.target.File == "" && c.target.Expr == "" && c.target.Flake == "" {
		d, err := parseArgs(nil, nil, nil)
		if err != nil {
			return inspect.Package{}, err
		}
		c.target.File, c.target.Flake = d.target.File, d.target.Flake
	}
	d, err := c.drvPath(ctx)
	if err != nil {
		return inspect.Package{}, err
	}
	return inspect.Package{DrvPath: d}, nil
}

// pkgService resolves the package (default.nix when none is named) and
// connects to the engine; the caller closes the service.
func (c *common) pkgService(ctx context.Context) (inspect.Package, api.Service, error) {
	p, err := c.pkg(ctx)
	if err != nil {
		return inspect.Package{}, nil, err
	}
	svc, err := c.service(ctx)
	if err != nil {
		return inspect.Package{}, nil, err
	}
	return p, svc, nil
}

// signedPkgService is what export and push start with: the --sign-key,
// the package and the engine.
func (c *common) signedPkgService(ctx context.Context) (string, inspect.Package, api.Service, error) {
	key, err := c.secretKey()
	if err != nil {
		return "", inspect.Package{}, nil, err
	}
	p, svc, err := c.pkgService(ctx)
	return key, p, svc, err
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// note tells the user when the chain taken is not the current
// derivation's (inspect.Selected.Note).
func note(text string) {
	if text != "" {
		fmt.Fprintf(os.Stderr, "nixlayer: note: %s\n", text)
	}
}

// nixlayer shell [PKG] --at PHASE|failed|LAYER [--keep]
func cmdShell(ctx context.Context, args []string) error {
	c, pos, _, err := inspectCommand("shell", args)
	if err != nil {
		return err
	}
	at := c.value("--at")
	if at == "" && len(pos) > 0 {
		at, pos = pos[0], pos[1:]
	}
	if len(pos) > 0 || at == "" {
		return usagef("nixlayer shell [PACKAGE] --at PHASE|failed [--keep]")
	}
	p, svc, err := c.pkgService(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	res, err := svc.Shell(ctx, api.ShellRequest{DrvPath: p.DrvPath, At: at, Keep: c.flags["--keep"]}, api.Terminal{In: os.Stdin, Out: os.Stdout, Notice: os.Stderr})
	if err != nil {
		return err
	}
	if c.json {
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
	at := c.value("--at")
	if at == "" && len(pos) > 0 {
		at, pos = pos[0], pos[1:]
	}
	if len(pos) > 1 {
		return usagef("nixlayer mount [PACKAGE] PHASE [DIR]")
	}
	e, err := c.engine()
	if err != nil {
		return err
	}
	defer e.Close()
	if at == "" {
		ms, err := e.Trees().Mounts()
		if err != nil {
			return err
		}
		if c.json {
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
	sel, err := e.Select(ctx, p, at, os.Stderr, nil)
	if err != nil {
		return err
	}
	note(sel.Note)
	dir := e.Trees().DefaultMountDir(sel.Layer, sel.Phase)
	if len(pos) == 1 {
		dir = pos[0]
	}
	rec, err := e.Trees().Mount(sel.Layer, sel.Phase, dir)
	if err != nil {
		return err
	}
	if c.json {
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
	e, err := c.engine()
	if err != nil {
		return err
	}
	defer e.Close()
	ms, err := e.Trees().Mounts()
	if err != nil {
		return err
	}
	var dirs []string
	switch {
	case c.flags["--all"]:
		for _, m := range ms {
			dirs = append(dirs, m.Dir)
		}
	case len(pos) != 1:
		return usagef("nixlayer umount DIR | nixlayer umount [PACKAGE] PHASE | nixlayer umount --all")
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
			sel, err := e.Select(ctx, p, pos[0], os.Stderr, nil)
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
		if err := e.Trees().Unmount(d); err != nil {
			return err
		}
		if !c.json {
			fmt.Fprintf(os.Stderr, "nixlayer: unmounted %s\n", d)
		}
	}
	if c.json {
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
		return usagef("nixlayer ls [PACKAGE | NAME] [--json [--builds]]")
	}
	lr, err := query(ctx, c, api.Service.List, api.ListRequest{Package: p, Builds: true})
	if err != nil {
		return err
	}
	rows, builds := lr.Layers, lr.Builds
	if c.json && !c.flags["--builds"] {
		return printJSON(rows)
	}
	if builds == nil {
		builds = []buildindex.Build{}
	}
	if c.json {
		return printJSON(struct {
			Layers []inspect.LayerRow `json:"layers"`
			Builds []buildindex.Build `json:"builds"`
		}{rows, builds})
	}
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "nixlayer: no layers in the cache")
	} else {
		printLayers(rows)
	}
	if len(builds) > 0 {
		if len(rows) > 0 {
			fmt.Println()
		}
		printBuilds(os.Stdout, builds)
	}
	return nil
}

func printLayers(rows []inspect.LayerRow) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
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
	fmt.Printf("%d layers, %s\n", len(rows), layers.FormatSize(total))
}

// age is how long ago t was, as ls shows it (3s, 5m, 2h, 4d).
func age(t time.Time) string {
	return events.Age(time.Since(t), events.AgeUnits{"s", "m", "h", "d"})
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
		return usagef("nixlayer log PACKAGE|NAME [PHASE]")
	}
	phase := ""
	if len(pos) == 1 {
		phase = pos[0]
	} else if len(pos) > 1 {
		return usagef("nixlayer log PACKAGE|NAME [PHASE]")
	}
	logs, err := query(ctx, c, api.Service.Log, api.LogRequest{Package: p, Phase: phase})
	if err != nil {
		return err
	}
	if c.json {
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
		return usagef("nixlayer gc [--keep-last N] [--max-size SIZE] [--older-than AGE] [--dry-run]")
	}
	o := api.GCRequest{DryRun: c.flags["--dry-run"]}
	if v := c.value("--keep-last"); v != "" {
		if o.KeepLast, err = strconv.Atoi(v); err != nil || o.KeepLast < 1 {
			return fmt.Errorf("--keep-last needs a number ≥ 1, not %q", v)
		}
	}
	if v := c.value("--max-size"); v != "" {
		if o.MaxSize, err = gc.ParseSize(v); err != nil {
			return fmt.Errorf("--max-size: %w", err)
		}
	}
	if v := c.value("--older-than"); v != "" {
		if o.OlderThan, err = parseAge(v); err != nil {
			return fmt.Errorf("--older-than: %w", err)
		}
	}
	res, err := request(ctx, c, api.Service.GC, o, api.Output{Log: os.Stderr})
	if res != nil && c.json {
		if jerr := printJSON(res); jerr != nil {
			return jerr
		}
	} else if res != nil {
		verb := "removed"
		if res.DryRun {
			verb = "would remove"
		}
		fmt.Printf("%s %d layers, freed %s (%d bytes); kept %d layers (%s)\n", verb, len(res.Removed), layers.FormatSize(res.Freed), res.Freed, res.Kept, layers.FormatSize(res.KeptBytes))
		if len(res.InUse) > 0 {
			fmt.Printf("left %d layers in use by a running build, a shell or a mount\n", len(res.InUse))
		}
	}
	return err
}

// parseAge reads Go durations plus days (7d).
func parseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, fmt.Errorf("bad age %q (use e.g. 7d, 12h)", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad age %q (use e.g. 7d, 12h)", s)
	}
	return d, nil
}

// dirCommandArgs reads the command line of export and import, which name
// one directory (made absolute) besides the package and their flags.
func dirCommandArgs(args []string, name, usage string) (*common, string, error) {
	c, pos, _, err := inspectCommand(name, args)
	if err != nil {
		return nil, "", err
	}
	if len(pos) != 1 {
		return nil, "", usagef("%s", usage)
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
	res, err := svc.Export(ctx, api.ExportRequest{DrvPath: p.DrvPath, At: c.value("--at"), Dir: dir, Ref: c.value("--tag"), SecretKey: key}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	note(res.Selection.Note)
	if c.json {
		return printJSON(res.ExportResult)
	}
	fmt.Fprintf(os.Stderr, "nixlayer: exported %d layers of %s (up to %s, %s compressed, %s) as oci:%s:%s\n", len(res.Layers), res.Selection.Name, res.Selection.Phase, layers.FormatSize(res.Bytes), signedBy(res.SignedBy), res.Dir, res.Ref)
	return nil
}

// nixlayer import DIR [--tag REF]
func cmdImport(ctx context.Context, args []string) error {
	c, dir, err := dirCommandArgs(args, "import", "nixlayer import DIR [--tag REF]")
	if err != nil {
		return err
	}
	res, err := request(ctx, c, api.Service.Import, api.ImportRequest{Dir: dir, Ref: c.value("--tag")}, api.Output{Log: os.Stderr})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(res)
	}
	for _, r := range res {
		trust := "signed by " + r.SignedBy
		if !r.Verified {
			trust = "NOT VERIFIED (" + r.Untrusted + "): results resting on them stay out of the Nix store"
		}
		fmt.Fprintf(os.Stderr, "nixlayer: imported %s: %d layers new, %d already cached; %s\n", r.Ref, r.Created, r.Reused, trust)
	}
	return nil
}

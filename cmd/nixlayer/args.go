package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/daemon"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

// common holds the flags every package command takes.
type common struct {
	target   nixstore.Target
	cacheDir string
	verbose  bool
	json     bool
	strict   bool
	from     string
	quiet    bool
	noLink   bool
	outLink  string
	extra    []string // flags this command handles itself
	flags    map[string]bool
	// Layer caches: accept chains without a trusted signature (marked not
	// verified); plain HTTP to every registry.
	noCheckSigs bool
	insecure    bool
}

// commonFlag is one of the flags every package command takes.
type commonFlag struct {
	flagSpec
	pkg bool // the flag names the package (file, expression or attribute)
	set func(c *common, v []string)
}

// commonFlagTable is the one table of the package commands' flags:
// parseArgs reads them, inspectArgs tells them from positional arguments,
// help and the completion scripts list them.
var commonFlagTable = []commonFlag{
	{flagSpec{names: []string{"-A", "--attr"}, arg: "ATTR", help: "the attribute of the Nix file to build (as nix-build -A)", complete: completePackage}, true,
		func(c *common, v []string) { c.target.Attr = v[0] }},
	{flagSpec{names: []string{"-f", "--file"}, arg: "FILE", help: "the Nix file (default ./default.nix)", complete: completeFile}, true,
		func(c *common, v []string) { c.target.File = v[0] }},
	{flagSpec{names: []string{"-E", "--expr"}, arg: "EXPR", help: "a Nix expression giving the derivation"}, true,
		func(c *common, v []string) { c.target.Expr = v[0] }},
	{flagSpec{names: []string{"--arg"}, arg: "NAME EXPR", help: "pass NAME = EXPR to the file's function"}, false,
		func(c *common, v []string) { c.target.Args[v[0]] = v[1] }},
	{flagSpec{names: []string{"--argstr"}, arg: "NAME STRING", help: "pass NAME = \"STRING\" to the file's function"}, false,
		func(c *common, v []string) { c.target.ArgStrs[v[0]] = v[1] }},
	{flagSpec{names: []string{"--override-input"}, arg: "INPUT REF", help: "a flake: use REF for the input INPUT (as nix build)"}, false,
		func(c *common, v []string) { c.target.OverrideInputs[v[0]] = v[1] }},
	{flagSpec{names: []string{"--impure"}, help: "a flake: evaluate impurely (as nix build)"}, false,
		func(c *common, _ []string) { c.target.Impure = true }},
	{flagSpec{names: []string{"--cache"}, arg: "DIR", help: "the layer cache (root only; default /var/cache/nixlayer, $NIXLAYER_CACHE)", complete: completeDir}, false,
		func(c *common, v []string) { c.cacheDir = v[0] }},
	{flagSpec{names: []string{"--from"}, arg: "PHASE", help: "rerun from this phase even if it is cached", complete: completePhase}, false,
		func(c *common, v []string) { c.from = v[0] }},
	{flagSpec{names: []string{"-o", "--out-link"}, arg: "PATH", help: "the result link (default ./result)", complete: completeFile}, false,
		func(c *common, v []string) { c.outLink = v[0] }},
	{flagSpec{names: []string{"--no-out-link"}, help: "make no result link"}, false,
		func(c *common, _ []string) { c.noLink = true }},
	{flagSpec{names: []string{"--strict"}, help: "key every phase on every attribute (no phase placement)"}, false,
		func(c *common, _ []string) { c.strict = true }},
	{flagSpec{names: []string{"--json"}, help: "print the result as JSON"}, false,
		func(c *common, _ []string) { c.json = true }},
	{flagSpec{names: []string{"-Q", "--no-build-output"}, help: "hide the builder's output"}, false,
		func(c *common, _ []string) { c.quiet = true }},
	{flagSpec{names: []string{"-v", "--verbose"}, help: "debug log on stderr"}, false,
		func(c *common, _ []string) { c.verbose = true }},
	{flagSpec{names: []string{"--no-check-sigs"}, help: "use pulled chains no trusted key signed (marked not verified)"}, false,
		func(c *common, _ []string) { c.noCheckSigs = true }},
	{flagSpec{names: []string{"--insecure"}, help: "plain HTTP to registries"}, false,
		func(c *common, _ []string) { c.insecure = true }},
}

// commonFlags indexes commonFlagTable by name.
var commonFlags = indexFlags(commonFlagTable)

func indexFlags(flags []commonFlag) map[string]commonFlag {
	byName := map[string]commonFlag{}
	for _, f := range flags {
		for _, n := range f.names {
			byName[n] = f
		}
	}
	return byName
}

// commonFlagSpecs are the common flags as help and completion list them.
func commonFlagSpecs() []flagSpec {
	specs := make([]flagSpec, len(commonFlagTable))
	for i, f := range commonFlagTable {
		specs[i] = f.flagSpec
	}
	return specs
}

// parseArgs reads nix-build-like arguments; boolFlags and valueFlags name
// the command's own extra flags.
func parseArgs(args []string, boolFlags, valueFlags []string) (*common, error) {
	c := &common{outLink: "result", flags: map[string]bool{}}
	c.target.Args, c.target.ArgStrs, c.target.OverrideInputs = map[string]string{}, map[string]string{}, map[string]string{}
	need := func(i, n int, flag string) error {
		if i+n >= len(args) {
			return usageError{fmt.Sprintf("%s needs %d argument(s)", flag, n)}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		f, isCommon := commonFlags[a]
		switch {
		case isCommon:
			n := f.values()
			if err := need(i, n, a); err != nil {
				return nil, err
			}
			f.set(c, args[i+1:i+1+n])
			i += n
		case slices.Contains(boolFlags, a):
			c.flags[a] = true
		case slices.Contains(valueFlags, a):
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.extra = append(c.extra, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			return nil, usageError{fmt.Sprintf("unknown flag %s (nixlayer COMMAND --help lists the flags)", a)}
		default:
			switch {
			case c.target.File != "" || c.target.Flake != "":
				c.extra = append(c.extra, a)
			case isFlakeArg(a):
				c.target.Flake = nixstore.AbsFlakeRef(a)
			default:
				c.target.File = a
			}
		}
	}
	if c.target.File == "" && c.target.Expr == "" && c.target.Flake == "" {
		// As nix-build does, then as nix build does.
		c.target.File = "./default.nix"
		if _, err := os.Stat(c.target.File); err != nil {
			if !nixstore.HasFlake(".") {
				return nil, fmt.Errorf("no package given and no default.nix or flake.nix here: use FILE -A ATTR, -E EXPR, a flake reference (.#hello) or a .drv path")
			}
			c.target.File, c.target.Flake = "", nixstore.AbsFlakeRef(".")
		}
	}
	if c.target.File != "" && !strings.HasSuffix(c.target.File, ".drv") {
		if abs, err := filepath.Abs(c.target.File); err == nil {
			c.target.File = abs
		}
	}
	return c, nil
}

// isFlakeArg tells a positional package argument that names a flake: a
// flake reference (.#hello, path:…, github:…), or a directory with a
// flake.nix and no default.nix (nix-build's reading wins when both exist).
func isFlakeArg(a string) bool {
	if nixstore.IsFlakeRef(a) {
		return true
	}
	if fi, err := os.Stat(a); err != nil || !fi.IsDir() {
		return false
	}
	_, err := os.Stat(filepath.Join(a, "default.nix"))
	return err != nil && nixstore.HasFlake(a)
}

// value returns the value of one of the command's own value flags.
func (c *common) value(flag string) string {
	for i := 0; i+1 < len(c.extra); i++ {
		if c.extra[i] == flag {
			return c.extra[i+1]
		}
	}
	return ""
}

func (c *common) logger() *zap.Logger {
	cfg := zap.NewDevelopmentConfig() // stderr
	cfg.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	cfg.DisableStacktrace = true
	cfg.DisableCaller = true
	if c.verbose {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	}
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// service is the engine every request goes to: in this process for root
// (who owns the shared cache), else `nixlayer daemon`.
func (c *common) service(ctx context.Context) (api.Service, error) {
	if os.Geteuid() == 0 {
		return api.OpenLocal(runner.Options{CacheDir: c.cacheDir, Logger: c.logger()})
	}
	if c.cacheDir != "" {
		return nil, fmt.Errorf("--cache is for root: other users build through the nixlayer daemon, which owns the shared cache")
	}
	return daemon.Dial(ctx, daemon.SocketPath())
}

// request connects to the engine for one request: m is the api.Service
// method, given req and out.
func request[R, T any](ctx context.Context, c *common, m func(api.Service, context.Context, R, api.Output) (T, error), req R, out api.Output) (T, error) {
	svc, err := c.service(ctx)
	if err != nil {
		var none T
		return none, err
	}
	defer svc.Close()
	return m(svc, ctx, req, out)
}

// query is request for a method that reports nothing while it runs.
func query[R, T any](ctx context.Context, c *common, m func(api.Service, context.Context, R) (T, error), req R) (T, error) {
	return request(ctx, c, func(svc api.Service, ctx context.Context, req R, _ api.Output) (T, error) {
		return m(svc, ctx, req)
	}, req, api.Output{})
}

// engine is the engine in this process, for what only root does: mounts on
// the host.
func (c *common) engine() (*runner.Engine, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("this command works on the cache directly and needs root (other users: nixlayer build, plan, shell, ls, log, verify, learn, status, export, pull go through the nixlayer daemon)")
	}
	return runner.Open(runner.Options{CacheDir: c.cacheDir, Logger: c.logger()})
}

// registry is the request's layer-cache switches.
func (c *common) registry() layercache.RegistryOptions {
	return layercache.RegistryOptions{NoCheckSigs: c.noCheckSigs, Insecure: c.insecure}
}

// secretKey is the key --sign-key names, read with the caller's rights
// ("" without the flag: the engine's secretKeyFile signs).
func (c *common) secretKey() (string, error) {
	file := c.value("--sign-key")
	if file == "" {
		return "", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--sign-key: %w", err)
	}
	return string(data), nil
}

// drvPath instantiates the target to exactly one derivation.
func (c *common) drvPath(ctx context.Context) (string, error) {
	drvs, err := nixstore.Instantiate(ctx, c.target)
	if err != nil {
		return "", err
	}
	if len(drvs) != 1 {
		return "", fmt.Errorf("the expression gives %d derivations; pick one with -A", len(drvs))
	}
	return drvs[0], nil
}

// open instantiates the package (as the caller: its files, its rights)
// and connects to the engine: what every build-like command starts with.
func (c *common) open(ctx context.Context) (string, api.Service, error) {
	drvPath, err := c.drvPath(ctx)
	if err != nil {
		return "", nil, err
	}
	svc, err := c.service(ctx)
	if err != nil {
		return "", nil, err
	}
	return drvPath, svc, nil
}

// parseAndOpen is open for a command that takes only the common flags.
func parseAndOpen(ctx context.Context, args []string) (*common, string, api.Service, error) {
	c, err := parseArgs(args, nil, nil)
	if err != nil {
		return nil, "", nil, err
	}
	drvPath, svc, err := c.open(ctx)
	return c, drvPath, svc, err
}

// buildLog is where the builder's output goes: stderr without Nix's
// structured lines, or nowhere with -Q.
func (c *common) buildLog() io.Writer {
	if c.quiet {
		return io.Discard
	}
	return newUserLog(os.Stderr)
}

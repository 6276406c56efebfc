package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/render"
	"github.com/nixlayer/nixlayer/daemon"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

// common is a package command's parsed line (cmdline.Args) with the ways
// to the engine it names: the service, the engine in this process, the
// package's derivation.
type common struct{ *cmdline.Args }

// parseArgs is cmdline.Parse for a command with no flags of its own.
func parseArgs(args []string) (*common, error) {
	a, err := cmdline.Parse(args, nil, nil)
	if err != nil {
		return nil, err
	}
	return &common{a}, nil
}

func (c *common) logger() *zap.Logger {
	cfg := zap.NewDevelopmentConfig() // stderr
	cfg.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	cfg.DisableStacktrace = true
	cfg.DisableCaller = true
	if c.Verbose {
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
		return api.OpenLocal(runner.Options{CacheDir: c.CacheDir, Logger: c.logger()})
	}
	if c.CacheDir != "" {
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

// local is the engine in this process, for what only root does: mounts on
// the host.
func (c *common) local() (*api.Local, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("this command works on the cache directly and needs root (other users: nixlayer build, plan, shell, ls, log, verify, learn, status, export, pull go through the nixlayer daemon)")
	}
	return api.OpenLocal(runner.Options{CacheDir: c.CacheDir, Logger: c.logger()})
}

// registry is the request's layer-cache switches.
func (c *common) registry() layercache.RegistryOptions {
	return layercache.RegistryOptions{NoCheckSigs: c.NoCheckSigs, Insecure: c.Insecure}
}

// secretKey is the key --sign-key names, read with the caller's rights
// ("" without the flag: the engine's secretKeyFile signs).
func (c *common) secretKey() (string, error) {
	file := c.Value("--sign-key")
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
	drvs, err := nixstore.Instantiate(ctx, c.Target)
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
	c, err := parseArgs(args)
	if err != nil {
		return nil, "", nil, err
	}
	drvPath, svc, err := c.open(ctx)
	return c, drvPath, svc, err
}

// pkg resolves the named package to its derivation; without one, the
// default.nix of the current directory, as nix-build does.
func (c *common) pkg(ctx context.Context) (inspect.Package, error) {
	if c.Target.File == "" && c.Target.Expr == "" && c.Target.Flake == "" {
		d, err := parseArgs(nil)
		if err != nil {
			return inspect.Package{}, err
		}
		c.Target.File, c.Target.Flake = d.Target.File, d.Target.Flake
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

// buildLog is where the builder's output goes: stderr without Nix's
// structured lines, or nowhere with -Q.
func (c *common) buildLog() io.Writer {
	if c.Quiet {
		return io.Discard
	}
	return render.NewUserLog(os.Stderr)
}

// printJSON is --json's output on stdout.
func printJSON(v any) error { return render.JSON(os.Stdout, v) }

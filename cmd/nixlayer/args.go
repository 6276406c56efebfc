package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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

// parseArgs reads nix-build-like arguments; boolFlags and valueFlags name
// the command's own extra flags.
func parseArgs(args []string, boolFlags, valueFlags []string) (*common, error) {
	c := &common{outLink: "result", flags: map[string]bool{}}
	c.target.Args, c.target.ArgStrs = map[string]string{}, map[string]string{}
	isIn := func(f string, list []string) bool {
		for _, x := range list {
			if x == f {
				return true
			}
		}
		return false
	}
	need := func(i, n int, flag string) error {
		if i+n >= len(args) {
			return fmt.Errorf("%s needs %d argument(s)", flag, n)
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-A" || a == "--attr":
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.target.Attr = args[i+1]
			i++
		case a == "-f" || a == "--file":
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.target.File = args[i+1]
			i++
		case a == "-E" || a == "--expr":
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.target.Expr = args[i+1]
			i++
		case a == "--arg" || a == "--argstr":
			if err := need(i, 2, a); err != nil {
				return nil, err
			}
			if a == "--arg" {
				c.target.Args[args[i+1]] = args[i+2]
			} else {
				c.target.ArgStrs[args[i+1]] = args[i+2]
			}
			i += 2
		case a == "--cache":
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.cacheDir = args[i+1]
			i++
		case a == "--from":
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.from = args[i+1]
			i++
		case a == "-o" || a == "--out-link":
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.outLink = args[i+1]
			i++
		case a == "--no-out-link":
			c.noLink = true
		case a == "--strict":
			c.strict = true
		case a == "--json":
			c.json = true
		case a == "-Q" || a == "--no-build-output":
			c.quiet = true
		case a == "-v" || a == "--verbose":
			c.verbose = true
		case a == "--no-check-sigs":
			c.noCheckSigs = true
		case a == "--insecure":
			c.insecure = true
		case isIn(a, boolFlags):
			c.flags[a] = true
		case isIn(a, valueFlags):
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.extra = append(c.extra, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("unknown flag %s (see nixlayer help)", a)
		default:
			if c.target.File != "" {
				c.extra = append(c.extra, a)
				continue
			}
			c.target.File = a
		}
	}
	if c.target.File == "" && c.target.Expr == "" {
		c.target.File = "./default.nix"
		if _, err := os.Stat(c.target.File); err != nil {
			return nil, fmt.Errorf("no package given and no default.nix here: use FILE -A ATTR, -E EXPR or a .drv path")
		}
	}
	if c.target.File != "" && !strings.HasSuffix(c.target.File, ".drv") {
		if abs, err := filepath.Abs(c.target.File); err == nil {
			c.target.File = abs
		}
	}
	return c, nil
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

func (c *common) engine() (*runner.Engine, error) {
	return runner.Open(runner.Options{CacheDir: c.cacheDir, Logger: c.logger(), NoCheckSigs: c.noCheckSigs, Insecure: c.insecure})
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

// open instantiates the package and opens the cache: what every build-like
// command starts with.
func (c *common) open(ctx context.Context) (string, *runner.Engine, error) {
	drvPath, err := c.drvPath(ctx)
	if err != nil {
		return "", nil, err
	}
	e, err := c.engine()
	if err != nil {
		return "", nil, err
	}
	return drvPath, e, nil
}

// buildLog is where the builder's output goes: stderr without Nix's
// structured lines, or nowhere with -Q.
func (c *common) buildLog() io.Writer {
	if c.quiet {
		return io.Discard
	}
	return newUserLog(os.Stderr)
}

// Package runner is nixlayer's engine as the faces call it: Open claims a
// cache and wires one of each of the packages that do the work over it
// (the layer store, its locks, phaserun, learn, jobplan, build, background,
// layercache, layertree); Engine's methods are what the CLI (through api),
// the daemon, the hook and the language server ask of it: build, plan,
// learn, shell, ls, log, gc, verify, pull, push, export, import.
package runner

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/background"
	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/cacheconfig"
	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/jobplan"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/learn"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
	"github.com/nixlayer/nixlayer/verify"
)

// Options configure an Engine.
type Options struct {
	// CacheDir holds the layer store, probes and results.
	CacheDir string
	// Cores is NIX_BUILD_CORES; negative (or zero when unset) means Nix's
	// own `cores` setting, as nix-build would pass it.
	Cores int
	// Rewriter adapts reused layers to new output paths. By default the
	// runner learns each chain's path-dependency map and rewrites exactly.
	Rewriter rewrite.Rewriter
	Logger   *zap.Logger
	// Executable is the nixlayer binary that background work runs (`learn`);
	// the running one by default.
	Executable string
}

// Engine runs plans and builds against one cache.
type Engine struct {
	opts   Options
	layers *layers.Store
	log    *zap.Logger
	// inUse is held shared while the engine is open, so a process that gets
	// it exclusively knows it is alone with the cache.
	inUse *os.File
	// locks serialise builds of a derivation, learning and background
	// work of a package, and removals.
	locks cachelock.Locks
	// run prepares derivations and runs their steps and phases.
	run *phaserun.Runner
	// trees reads layers' files while it holds them mounted, and mounts
	// them on the host for `nixlayer mount`.
	trees *layertree.Trees
	// derivations recomputes the store paths a .drv claims.
	derivations *drv.Checker
	// learner learns the chains' path maps.
	learner *learn.Learner
	// caches are the layer caches (config.json).
	caches *layercache.Cache
	// plans plans prepared derivations; builder builds them.
	plans   *jobplan.Planner
	builder *build.Builder
	// worker does the work builds leave to the background.
	worker *background.Worker
}

// The build's vocabulary, as the faces know it from the engine.
type (
	Result       = build.Result
	BuildOptions = build.BuildOptions
	PhaseError   = build.PhaseError
)

// DefaultCacheDir is the cache a user's commands use unless told otherwise
// (cacheconfig.DefaultDir).
func DefaultCacheDir() string { return cacheconfig.DefaultDir() }

// Open opens the cache and removes layers left half-written by a writer
// that died.
func Open(opts Options) (*Engine, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	if opts.Cores <= 0 {
		if cores, ok := nixstore.BuildCores(context.Background()); ok {
			opts.Cores = cores
		} else {
			opts.Cores = runtime.NumCPU()
		}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	layers.RouteLibraryLogs(opts.Logger)
	if err := checkCacheOwner(opts.CacheDir); err != nil {
		return nil, err
	}
	st, err := layers.Open(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	derivations := drv.NewChecker()
	e := &Engine{opts: opts, layers: st, log: opts.Logger, derivations: derivations, locks: cachelock.In(opts.CacheDir), trees: layertree.New(st, opts.CacheDir, opts.Logger),
		run: &phaserun.Runner{Layers: st, CacheDir: opts.CacheDir, Cores: opts.Cores, Log: opts.Logger, Derivations: derivations}}
	e.learner = &learn.Learner{Layers: st, Run: e.run, Locks: e.locks, CacheDir: opts.CacheDir, Log: opts.Logger, Fixed: opts.Rewriter != nil}
	e.caches = &layercache.Cache{Layers: st, Dir: opts.CacheDir, Log: opts.Logger, Config: func() (*layercache.Config, error) {
		cfg, err := cacheconfig.Read(opts.CacheDir)
		if err != nil {
			return nil, err
		}
		return &cfg.Config, nil
	}}
	e.plans = &jobplan.Planner{Layers: st, Learner: e.learner, Log: opts.Logger}
	e.builder = &build.Builder{Layers: st, CacheDir: opts.CacheDir, Log: opts.Logger, Locks: e.locks, Run: e.run, Plans: e.plans,
		Learner: e.learner, Caches: e.caches, Rewriter: opts.Rewriter, GC: e}
	e.worker = &background.Worker{Builder: e.builder, Executable: opts.Executable}
	if err := e.claimCache(); err != nil {
		st.Close()
		return nil, err
	}
	if n, err := st.RemoveStale(); err != nil {
		e.log.Warn("removing stale layers", zap.Error(err))
	} else if n > 0 {
		e.log.Info("removed layers of interrupted builds", zap.Int("count", n))
	}
	return e, nil
}

// Close releases the cache.
func (e *Engine) Close() {
	e.trees.Close()
	e.layers.Close()
	if e.inUse != nil {
		e.inUse.Close()
	}
}

// claimCache registers this engine as a user of the cache. The first user
// after a crash also releases the layer mounts that died with their
// process (user mounts from `nixlayer mount` are kept).
func (e *Engine) claimCache() error {
	f, err := os.OpenFile(filepath.Join(e.opts.CacheDir, "in-use.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("cache directory %s: %w", e.opts.CacheDir, err)
	}
	e.inUse = f
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		e.releaseOrphanMounts()
		e.caches.RemoveLeftovers()
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
}

func (e *Engine) releaseOrphanMounts() {
	kept := map[string]bool{}
	if recs, err := e.trees.Mounts(); err == nil {
		for _, r := range recs {
			kept[r.Layer] = true
		}
	}
	all, err := e.layers.List()
	if err != nil {
		return
	}
	for _, l := range all {
		if !kept[l.ID] && e.layers.MountCount(l.ID) > 0 {
			if err := e.layers.ForceUnmount(l.ID); err != nil {
				e.log.Warn("releasing an orphaned mount", zap.Error(err))
			}
		}
	}
}

// CacheDir is the cache directory in use.
func (e *Engine) CacheDir() string { return e.opts.CacheDir }

// Layers exposes the layer store to inspection commands.
func (e *Engine) Layers() *layers.Store { return e.layers }

// Trees reads layers' files and mounts layers on the host.
func (e *Engine) Trees() *layertree.Trees { return e.trees }

// checkCacheOwner refuses a cache another user could write: layers in it
// may be registered in the Nix store, so it must belong to the caller and
// be private (0700).
func checkCacheOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil // created private by layers.Open
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("cache directory %s belongs to uid %d, not to you (uid %d): use --cache DIR with a directory of your own", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("cache directory %s is not writable, so it cannot be made private (0700): %w (use --cache DIR or fix its permissions)", dir, err)
		}
	}
	return nil
}

// Build builds a derivation phase by phase, reusing cached layers
// (build.Builder). A result that rests on what is not yet verified is
// delivered at once as provisional (unless Exact); after every build,
// failed ones included, work that learning or verification still owes
// goes on in the background (background.Worker).
func (e *Engine) Build(ctx context.Context, drvPath string, bo BuildOptions) (*Result, error) {
	var o build.Outcome
	res, err := e.builder.Build(ctx, drvPath, bo, &o)
	e.worker.AfterBuild(drvPath, bo, &o, res, err)
	return res, err
}

// Learn does the background work of drvPath's package (`nixlayer learn`):
// background.Worker.Learn.
func (e *Engine) Learn(ctx context.Context, drvPath string, ro layercache.RegistryOptions, v *access.Viewer, progress func(events.Event)) error {
	return e.worker.Learn(ctx, drvPath, ro, v, progress)
}

// Plan computes the plan for a derivation without building anything but
// its inputs.
func (e *Engine) Plan(ctx context.Context, drvPath string, po planner.Options) (*planner.Plan, error) {
	j, err := e.run.Prepare(ctx, drvPath, cmp.Or(po.Log, io.Discard))
	if err != nil {
		return nil, err
	}
	return e.plans.Plan(j, po)
}

// Verify builds drvPath the way Nix does and compares it file by file with
// the layered result (verify.Check).
func (e *Engine) Verify(ctx context.Context, drvPath string, log io.Writer) (*verify.Verification, error) {
	return e.VerifyIn(ctx, drvPath, "", log)
}

// VerifyIn is Verify for results kept in resultsDir ("" for the cache's).
func (e *Engine) VerifyIn(ctx context.Context, drvPath, resultsDir string, log io.Writer) (*verify.Verification, error) {
	d, err := e.run.ReadDerivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	return verify.Check(ctx, d, e.builder.ResultsDir(resultsDir), e.LastVerdict(drvPath), cmp.Or(log, io.Discard))
}

// LastVerdict is the verdict recorded on the newest build of drvPath
// that reused rewritten layers (nil when there is none): whether its
// outputs are exact, the rule that decided, and the phase an exact build
// reruns from.
func (e *Engine) LastVerdict(drvPath string) *verdict.Exactness {
	all, err := e.layers.List()
	if err != nil {
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- { // newest first
		if all[i].Meta.DrvPath == drvPath {
			if ex := e.learner.LoadExactness(all[i].ID); ex != nil {
				return ex
			}
		}
	}
	return nil
}

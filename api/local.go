package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/runner"
	"github.com/nixlayer/nixlayer/verify"
)

// Local serves requests with an engine in this process.
type Local struct {
	e    *runner.Engine
	opts LocalOptions
	own  bool // Close closes the engine
}

// LocalOptions say whom a Local serves.
type LocalOptions struct {
	// ResultsDir holds results that stay outside the store ("" for the
	// cache's results directory).
	ResultsDir string
	// Owner owns those results (nil: whoever runs the engine).
	Owner *results.Owner
	// User and UID name the caller in Status (default: this process).
	User string
	UID  int
	// Untrusted callers may not gc, import or push, pull only from the
	// engine's layerCaches, and may not turn off signature checks or TLS.
	Untrusted bool
	// Engine says where the engine runs ("local" by default).
	Engine, Socket string
}

// OpenLocal opens the cache as root does (runner.Open) and serves this
// process's user.
func OpenLocal(opts runner.Options) (*Local, error) {
	e, err := runner.Open(opts)
	if err != nil {
		return nil, err
	}
	l := NewLocal(e, LocalOptions{})
	l.own = true
	return l, nil
}

// NewLocal serves requests with an open engine (shared; Close leaves it
// open).
func NewLocal(e *runner.Engine, opts LocalOptions) *Local {
	if opts.User == "" {
		opts.UID = os.Getuid()
		opts.User = strconv.Itoa(opts.UID)
		if u, err := user.LookupId(opts.User); err == nil {
			opts.User = u.Username
		}
	}
	if opts.Engine == "" {
		opts.Engine = "local"
	}
	return &Local{e: e, opts: opts}
}

// ErrNotTrusted is the answer to what needs Nix's trusted-users (gc, import,
// push, registry switches, pulls from outside layerCaches) from other users.
var ErrNotTrusted = errors.New("only trusted users may do this")

func (l *Local) Build(ctx context.Context, req BuildRequest, out Output) (*runner.Result, error) {
	if err := l.mayUse(req.Registry); err != nil {
		return nil, err
	}
	progress := out.progress()
	return l.e.Build(ctx, req.DrvPath, runner.BuildOptions{
		Options:     planner.Options{Strict: req.Strict, From: req.From, Viewer: l.viewer()},
		Log:         out.Log,
		Progress:    progress,
		Deliver:     true,
		Exact:       req.Exact,
		NoLearn:     req.NoLearn,
		RecordLink:  req.ResultLink,
		ResultsDir:  l.opts.ResultsDir,
		ResultOwner: l.opts.Owner,
		Registry:    req.Registry,
	})
}

// BuildForNix is the hook's build of a derivation Nix asked it to build:
// exact and never slower than Nix would build it, the outputs registered
// while Nix holds their locks (runner.BuildOptions.NeverSlowerThanFull,
// LocksHeld). Only the hook, root and in-process, calls it: it is not part
// of Service, so no client of the daemon can ask for it.
func (l *Local) BuildForNix(ctx context.Context, drvPath string, out Output) (*runner.Result, error) {
	return l.e.Build(ctx, drvPath, runner.BuildOptions{
		NeverSlowerThanFull: true,
		Deliver:             true,
		LocksHeld:           true,
		Log:                 out.Log,
		Progress:            out.Progress,
	})
}

func (l *Local) Results(ctx context.Context, req ResultsRequest) (*ResultsResult, error) {
	all, err := results.List(l.e.CacheDir())
	if err != nil {
		return nil, err
	}
	res := &ResultsResult{Results: []*results.Record{}, Background: []results.Job{}}
	want := map[string]bool{}
	for _, d := range req.Drvs {
		want[d] = true
	}
	seen := map[string]bool{}
	v := l.viewer()
	for _, r := range all {
		if r = v.ResultFor(r); r == nil {
			continue
		}
		seen[r.Drv] = true
		if len(want) == 0 || want[r.Drv] {
			res.Results = append(res.Results, r)
		}
	}
	for _, j := range results.Background(l.e.CacheDir()) {
		if v == nil || seen[j.Drv] {
			res.Background = append(res.Background, j)
		}
	}
	return res, nil
}

func (l *Local) Plan(ctx context.Context, req PlanRequest, out Output) (*PlanResult, error) {
	p, err := l.e.Plan(ctx, req.DrvPath, planner.Options{Strict: req.Strict, From: req.From, Log: out.Log, Viewer: l.viewer()})
	if err != nil {
		return nil, err
	}
	// Builds Nix ran itself and the history are reports: a broken index
	// is not an error.
	b, _ := buildindex.LastNixBuild(l.e.CacheDir(), p.Drv)
	h, _ := buildindex.HistoryOf(l.e.CacheDir(), p.Drv, p.Package, HistoryBuilds)
	r, _ := results.Of(l.e.CacheDir(), p.Drv)
	r = l.viewer().ResultFor(r)
	return &PlanResult{Plan: p, BuiltByNix: b, Result: r, History: h}, nil
}

func (l *Local) Learn(ctx context.Context, req LearnRequest, out Output) error {
	if err := l.mayUse(req.Registry); err != nil {
		return err
	}
	return l.e.Learn(ctx, req.DrvPath, req.Registry, l.viewer(), out.progress())
}

func (l *Local) Verify(ctx context.Context, req VerifyRequest, out Output) (*verify.Verification, error) {
	return l.e.VerifyIn(ctx, req.DrvPath, l.opts.ResultsDir, out.Log)
}

func (l *Local) Status(ctx context.Context) (*Status, error) {
	st := &Status{Engine: l.opts.Engine, Socket: l.opts.Socket, CacheDir: l.e.CacheDir(), Driver: l.e.Layers().Driver(),
		User: l.opts.User, UID: l.opts.UID, Trusted: !l.opts.Untrusted, ResultsDir: l.opts.ResultsDir}
	if st.ResultsDir == "" {
		st.ResultsDir = l.e.CacheDir() + "/results"
	}
	if all, err := l.e.Layers().List(); err == nil {
		st.Layers = len(all)
	}
	if err := phaserun.Preflight(ctx, l.e.CacheDir()); err != nil {
		st.NotReady = err.Error()
	}
	return st, nil
}

func (l *Local) List(ctx context.Context, req ListRequest) (*ListResult, error) {
	rows, err := l.e.List(req.Package, l.viewer())
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []inspect.LayerRow{}
	}
	res := &ListResult{Layers: rows}
	if req.Builds {
		if res.Builds, err = indexBuilds(l.e.CacheDir(), req.Package); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// indexBuilds are the index's builds of pkg (all without one), oldest first.
func indexBuilds(cacheDir string, pkg inspect.Package) ([]buildindex.Build, error) {
	all, err := buildindex.Builds(cacheDir)
	if err != nil {
		return nil, err
	}
	out := []buildindex.Build{}
	for _, b := range all {
		switch {
		case pkg.DrvPath != "" && b.Drv != pkg.DrvPath:
		case pkg.DrvPath == "" && pkg.Name != "" && b.Name != pkg.Name:
		default:
			out = append(out, b)
		}
	}
	return out, nil
}

func (l *Local) Log(ctx context.Context, req LogRequest) ([]inspect.PhaseLog, error) {
	return l.e.Log(ctx, req.Package, req.Phase, l.viewer())
}

func (l *Local) Shell(ctx context.Context, req ShellRequest, term Terminal) (*runner.ShellResult, error) {
	term = term.OrStd()
	return l.e.Shell(ctx, req.DrvPath, runner.ShellOptions{At: req.At, Keep: req.Keep, Stdin: term.In, Stdout: term.Out, Notice: term.Notice, Viewer: l.viewer()})
}

// ShellOn runs a shell on a terminal of its own (the daemon's pty).
func (l *Local) ShellOn(ctx context.Context, req ShellRequest, term Terminal) (*runner.ShellResult, error) {
	term = term.OrStd()
	return l.e.Shell(ctx, req.DrvPath, runner.ShellOptions{At: req.At, Keep: req.Keep, Stdin: term.In, Stdout: term.Out, Notice: term.Notice, Terminal: true, Viewer: l.viewer()})
}

func (l *Local) GC(ctx context.Context, req GCRequest, out Output) (*gc.Result, error) {
	if l.opts.Untrusted {
		return nil, l.notTrusted("nixlayer gc")
	}
	return l.e.GC(ctx, gc.Options{KeepLast: req.KeepLast, MaxSize: req.MaxSize, OlderThan: req.OlderThan, DryRun: req.DryRun, Log: out.Log})
}

func (l *Local) Import(ctx context.Context, req ImportRequest, out Output) ([]layercache.ImportResult, error) {
	if l.opts.Untrusted {
		return nil, l.notTrusted("nixlayer import")
	}
	return l.e.Import(ctx, req.Dir, req.Ref)
}

// Export writes into req.Dir with this process's rights: root's CLI. The
// daemon uses ExportTar.
func (l *Local) Export(ctx context.Context, req ExportRequest, out Output) (*ExportResult, error) {
	sel, s, err := l.selectChain(ctx, req.DrvPath, req.At, out)
	if err != nil {
		return nil, err
	}
	res, err := l.e.Export(ctx, sel.Layer.ID, req.Dir, orName(req.Ref, s), req.SecretKey)
	if err != nil {
		return nil, err
	}
	return &ExportResult{ExportResult: res, Selection: s}, nil
}

// ExportTar exports into a layout of the engine's and writes it to w as a
// tar, which the daemon's client adds to the caller's layout with the
// caller's rights (the daemon writes nowhere a user chooses).
func (l *Local) ExportTar(ctx context.Context, req ExportRequest, w io.Writer, out Output) (*ExportResult, error) {
	sel, s, err := l.selectChain(ctx, req.DrvPath, req.At, out)
	if err != nil {
		return nil, err
	}
	res, err := l.e.ExportTar(ctx, sel.Layer.ID, w, orName(req.Ref, s), req.SecretKey)
	if err != nil {
		return nil, err
	}
	return &ExportResult{ExportResult: res, Selection: s}, nil
}

func orName(ref string, s Selection) string {
	if ref == "" {
		return s.Name
	}
	return ref
}

// Pull is open to every allowed user, as substitution is in Nix: a pulled
// chain is used only when a trusted key signed it and its keys are the
// ones this build computes. But the engine fetches with its own network
// and registry credentials, so, like Nix's trusted-substituters, users Nix
// does not trust pull only from the repositories of the engine's
// layerCaches.
func (l *Local) Pull(ctx context.Context, req PullRequest, out Output) (*layercache.PullReport, error) {
	if err := l.mayUse(req.Registry); err != nil {
		return nil, err
	}
	if l.opts.Untrusted {
		ok, caches, err := l.e.LayerCache(req.Ref)
		if err != nil {
			return nil, err
		}
		if !ok {
			listed := "none"
			if len(caches) > 0 {
				listed = strings.Join(caches, ", ")
			}
			return nil, fmt.Errorf("nixlayer pull %s: %w (Nix's trusted-users); other users pull only from the daemon's layerCaches (%s), and %s is not trusted", req.Ref, ErrNotTrusted, listed, l.opts.User)
		}
	}
	return l.e.Pull(ctx, req.DrvPath, req.Ref, req.Registry, out.progress())
}

// Push is for trusted users: it sends what the shared cache holds to a
// registry of the caller's choice, with the engine's credentials and
// (by default) its signing key.
func (l *Local) Push(ctx context.Context, req PushRequest, out Output) (*PushResult, error) {
	if l.opts.Untrusted {
		return nil, l.notTrusted("nixlayer push")
	}
	sel, s, err := l.selectChain(ctx, req.DrvPath, req.At, out)
	if err != nil {
		return nil, err
	}
	rep, err := l.e.Push(ctx, sel.Layer.ID, req.Ref, layercache.PushOptions{SecretKey: req.SecretKey, Registry: req.Registry})
	if err != nil {
		return nil, err
	}
	return &PushResult{PushReport: rep, Selection: s}, nil
}

// selectChain finds the top of the chain a push or an export takes: the
// layer after phase at, or the newest cached phase of the derivation.
func (l *Local) selectChain(ctx context.Context, drvPath, at string, out Output) (*inspect.Selected, Selection, error) {
	pkg := inspect.Package{DrvPath: drvPath}
	var sel *inspect.Selected
	var err error
	if at != "" {
		sel, err = l.e.Select(ctx, pkg, at, out.Log, l.viewer())
	} else {
		sel, err = l.e.Top(ctx, pkg, out.Log, l.viewer())
	}
	if err != nil {
		return nil, Selection{}, err
	}
	return sel, Selection{Name: sel.Layer.Meta.DrvName, Phase: sel.Phase, Note: sel.Note}, nil
}

// mayUse refuses the registry switches to users Nix does not trust (as
// Nix restricts require-sigs): --no-check-sigs would let unsigned content
// into the shared cache, --insecure would send the engine's registry
// credentials in the clear.
func (l *Local) mayUse(ro layercache.RegistryOptions) error {
	switch {
	case !l.opts.Untrusted:
		return nil
	case ro.NoCheckSigs:
		return l.notTrusted("--no-check-sigs")
	case ro.Insecure:
		return l.notTrusted("--insecure")
	}
	return nil
}

// viewer is whom the engine serves, for what of the shared cache the
// caller sees (access.Viewer): a daemon's caller other than root sees only
// its own private layers and results (and those in the store); root's own
// process sees everything.
func (l *Local) viewer() *access.Viewer {
	if l.opts.Owner == nil || l.opts.UID == 0 {
		return nil
	}
	return &access.Viewer{UID: l.opts.UID}
}

func (l *Local) notTrusted(what string) error {
	return fmt.Errorf("%s: %w (Nix's trusted-users); %s is not", what, ErrNotTrusted, l.opts.User)
}

func (l *Local) LayerFiles(ctx context.Context, req LayerFilesRequest) (*layertree.Files, error) {
	if err := l.e.CheckVisible(req.Layer, l.viewer()); err != nil {
		return nil, err
	}
	return l.e.Trees().Files(req.Layer, req.Path)
}

func (l *Local) ReadLayerFile(ctx context.Context, req ReadLayerFileRequest) (*layertree.Data, error) {
	if err := l.e.CheckVisible(req.Layer, l.viewer()); err != nil {
		return nil, err
	}
	return l.e.Trees().Read(req.Layer, req.Path, req.Offset, req.Length)
}

func (l *Local) LayerDiff(ctx context.Context, req LayerDiffRequest) (*layertree.Diff, error) {
	if err := l.e.CheckVisible(req.Layer, l.viewer()); err != nil {
		return nil, err
	}
	return l.e.Trees().Diff(req.Layer)
}

func (l *Local) Close() error {
	if l.own {
		l.e.Close()
	}
	return nil
}

var _ Service = (*Local)(nil)

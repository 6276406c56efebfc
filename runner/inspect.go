package runner

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
)

// Select finds the layer holding the state after phase at of a package
// (inspect.Choose): with a .drv path the current plan decides; only
// layers v sees are chosen.
func (e *Engine) Select(ctx context.Context, pkg inspect.Package, at string, log io.Writer, v *access.Viewer) (*inspect.Selected, error) {
	sel, _, err := e.selectFor(ctx, pkg, at, log, v)
	return sel, err
}

// selectFor is Select, with the prepared derivation (nil without a .drv
// path).
func (e *Engine) selectFor(ctx context.Context, pkg inspect.Package, at string, log io.Writer, v *access.Viewer) (*inspect.Selected, *phaserun.Job, error) {
	j, p, err := e.planOf(ctx, &pkg, log, v)
	if err != nil {
		return nil, nil, err
	}
	all, vis, err := e.visibleLayers(v)
	if err != nil {
		return nil, nil, err
	}
	sel, err := inspect.Choose(e.layers, all, vis, pkg, p, at)
	if err != nil {
		return nil, nil, err
	}
	return sel, j, nil
}

// List describes the layers in the cache (only those of pkg when it is
// not empty), grouped by package, each chain from its base to its top;
// only those v sees.
func (e *Engine) List(pkg inspect.Package, v *access.Viewer) ([]inspect.LayerRow, error) {
	all, _, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	return inspect.Rows(e.layers, all, pkg), nil
}

// Log returns the stored build log of a package: of one phase, or of every
// phase of the newest chain (the failed one if the newest build failed);
// only of layers v sees.
func (e *Engine) Log(ctx context.Context, pkg inspect.Package, phase string, v *access.Viewer) ([]inspect.PhaseLog, error) {
	if phase != "" {
		sel, err := e.Select(ctx, pkg, phase, nil, v)
		if err != nil {
			return nil, err
		}
		return inspect.Logs(e.layers, []*layers.Layer{sel.Layer}), nil
	}
	all, _, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	top, err := inspect.NewestBuild(all, pkg)
	if err != nil {
		return nil, err
	}
	chain, err := e.Chain(top.ID)
	if err != nil {
		return nil, err
	}
	return inspect.Logs(e.layers, chain), nil
}

// Chain returns the layers from the base up to top, oldest first.
func (e *Engine) Chain(top string) ([]*layers.Layer, error) {
	return layers.WholeChain(e.layers, top)
}

// Top selects the top of the package's chain: the last cached phase of the
// current plan, else the newest top layer of the package (inspect.NewestTop);
// only layers v sees.
func (e *Engine) Top(ctx context.Context, pkg inspect.Package, log io.Writer, v *access.Viewer) (*inspect.Selected, error) {
	_, p, err := e.planOf(ctx, &pkg, log, v)
	if err != nil {
		return nil, err
	}
	if p != nil {
		for i := len(p.Phases) - 1; i >= 0; i-- {
			if ph := p.Phases[i]; ph.Status == planner.StatusCached {
				l, err := e.layers.Get(ph.Layer.ID)
				if err != nil {
					return nil, err
				}
				return &inspect.Selected{Layer: l, Phase: ph.Name}, nil
			}
		}
	}
	all, _, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	return inspect.NewestTop(e.layers, all, pkg, p)
}

// planOf prepares and plans pkg's derivation as v would build it, and
// names pkg after it; without a .drv path, nothing (the inspection goes by
// the package's name).
func (e *Engine) planOf(ctx context.Context, pkg *inspect.Package, log io.Writer, v *access.Viewer) (*phaserun.Job, *planner.Plan, error) {
	if pkg.DrvPath == "" {
		return nil, nil, nil
	}
	j, err := e.run.Prepare(ctx, pkg.DrvPath, cmp.Or(log, io.Discard))
	if err != nil {
		return nil, nil, err
	}
	p, err := e.plans.Plan(j, planner.Options{Viewer: v})
	if err != nil {
		return nil, nil, err
	}
	pkg.Name = j.Drv.Name
	return j, p, nil
}

// visibleLayers are the cache's layers v sees, oldest first.
func (e *Engine) visibleLayers(v *access.Viewer) ([]*layers.Layer, *access.Visibility, error) {
	all, err := e.layers.List()
	if err != nil {
		return nil, nil, err
	}
	vis := access.Of(v, all)
	return vis.Filter(all), vis, nil
}

// CheckVisible refuses a layer id that names a layer v may not see
// (access.Check).
func (e *Engine) CheckVisible(id string, v *access.Viewer) error {
	return access.Check(e.layers, id, v)
}

// ShellOptions control an interactive shell in a phase's state.
type ShellOptions struct {
	At string // phase, "failed" or a layer id
	// Keep turns the shell's changes into a layer (status derived, never a
	// cache hit) instead of discarding them.
	Keep bool
	// Stdin, Stdout (the shell's stdout and stderr) and Notice (nixlayer's
	// own messages) are the caller's terminal (api.Terminal.OrStd).
	Stdin  io.Reader
	Stdout io.Writer
	Notice io.Writer
	// Terminal: Stdin is a terminal of the shell's own (the daemon's pty),
	// which becomes its controlling terminal in a new session.
	Terminal bool
	// Viewer is whom the shell serves: it opens only layers v sees, and
	// its layer (kept or not) is v's alone.
	Viewer *access.Viewer
}

// ShellResult says what a shell worked on.
type ShellResult struct {
	Layer string `json:"layer"` // the phase layer the shell started from
	Phase string `json:"phase"`
	Kept  string `json:"kept,omitempty"` // the layer holding the changes (--keep)
	Exit  int    `json:"exit"`
}

// Shell opens an interactive bash in the sandbox on a throwaway child
// layer of the selected phase's layer, with the builder's shell state
// (variables, functions, working directory) restored.
func (e *Engine) Shell(ctx context.Context, drvPath string, so ShellOptions) (*ShellResult, error) {
	sel, j, err := e.selectFor(ctx, inspect.Package{DrvPath: drvPath}, so.At, so.Notice, so.Viewer)
	if err != nil {
		return nil, err
	}
	base := sel.Layer
	// The sandbox is the one of the derivation that built the layer, so
	// $out and friends are the paths the tree was built with.
	if base.Meta.DrvPath != "" && base.Meta.DrvPath != j.Drv.Path {
		if _, err := os.Stat(base.Meta.DrvPath); err == nil {
			if j, err = e.run.Prepare(ctx, base.Meta.DrvPath, so.Notice); err != nil {
				return nil, err
			}
		}
	}
	state, err := e.run.LoadState(base.ID)
	if err != nil {
		return nil, err
	}
	if sel.Note != "" {
		fmt.Fprintf(so.Notice, "nixlayer: note: %s\n", sel.Note)
	}
	label := sel.Phase
	if base.Meta.Status == layers.StatusFailed {
		label = "failed " + sel.Phase
	}
	fmt.Fprintf(so.Notice, "nixlayer: shell in the state after %s of %s (layer %s)\n", label, j.Drv.Name, layers.Short(base.ID))

	// No key: a shell's layer is never a cache hit, and it is private.
	uid := so.Viewer.Owner()
	l, err := e.layers.Create(base.ID, layers.Meta{Kind: layers.KindShell, DrvPath: j.Drv.Path, DrvName: j.Drv.Name, Outputs: base.Meta.Outputs, Note: "shell after " + label, PrivateTo: &uid})
	if err != nil {
		return nil, err
	}
	discard := func() {
		if err := e.layers.Delete(l.ID); err != nil {
			fmt.Fprintf(so.Notice, "nixlayer: warning: %v (nixlayer gc removes it)\n", err)
		}
	}
	root, err := e.layers.Mount(l.ID)
	if err != nil {
		discard()
		return nil, err
	}
	etc, err := os.MkdirTemp(e.opts.CacheDir, "etc-")
	if err != nil {
		e.layers.Unmount(l.ID)
		discard()
		return nil, err
	}
	defer os.RemoveAll(etc)
	s := phaserun.Step{Root: root, Etc: etc, Mode: "shell", Phase: label, Log: so.Stdout, Stdin: so.Stdin, Interactive: true, Terminal: so.Terminal}
	if state != nil {
		s.Restore = state.Script()
	}
	// The shell owns the terminal; an interrupt meant for it must not end
	// nixlayer's wait.
	r, runErr := e.run.RunStep(context.WithoutCancel(ctx), j, s)
	os.Remove(root + "/tmp/.nixlayer-shellrc")
	if uerr := e.layers.Unmount(l.ID); uerr != nil && runErr == nil {
		runErr = uerr
	}
	res := &ShellResult{Layer: base.ID, Phase: sel.Phase}
	if r != nil {
		res.Exit = r.Exit
	}
	if runErr != nil || !so.Keep {
		discard()
		if runErr != nil {
			return nil, fmt.Errorf("shell after %s of %s: %w", label, j.Drv.Name, runErr)
		}
		return res, nil
	}
	if err := e.run.SaveState(l.ID, state); err != nil {
		return nil, err
	}
	meta := l.Meta
	meta.Status = layers.StatusDerived
	meta.Note = "shell after " + label + " (kept)"
	f := false
	meta.Verified = &f
	if err := e.layers.Finish(l.ID, meta); err != nil {
		return nil, err
	}
	res.Kept = l.ID
	fmt.Fprintf(so.Notice, "nixlayer: kept the shell's changes as layer %s (never used as a cached result; open it again with --at %s)\n", layers.Short(l.ID), layers.Short(l.ID))
	return res, nil
}

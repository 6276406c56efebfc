package runner

import (
	"cmp"
	"context"
	"io"

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
	var j *phaserun.Job
	var p *planner.Plan
	if pkg.DrvPath != "" {
		var err error
		if j, err = e.run.Prepare(ctx, pkg.DrvPath, cmp.Or(log, io.Discard)); err != nil {
			return nil, nil, err
		}
		if p, err = e.plans.Plan(j, planner.Options{Viewer: v}); err != nil {
			return nil, nil, err
		}
		pkg.Name = j.Drv.Name
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
	var p *planner.Plan
	if pkg.DrvPath != "" {
		j, err := e.run.Prepare(ctx, pkg.DrvPath, cmp.Or(log, io.Discard))
		if err != nil {
			return nil, err
		}
		if p, err = e.plans.Plan(j, planner.Options{Viewer: v}); err != nil {
			return nil, err
		}
		pkg.Name = j.Drv.Name
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

package runner

import (
	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
)

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

// lookupFor is the layer cache as v's plan may use it.
func (e *Engine) lookupFor(v *access.Viewer) (planner.Lookup, error) {
	if v == nil {
		return e.layers, nil
	}
	all, err := e.layers.List()
	if err != nil {
		return nil, err
	}
	return access.Visible(e.layers, access.Of(v, all)), nil
}

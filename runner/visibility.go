package runner

import (
	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
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

package runner

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
)

// checkChain mounts the top of a reused chain: a layer whose directory was
// deleted behind nixlayer's back fails here instead of half-way through a
// build.
func (e *Engine) checkChain(top string) error {
	if _, err := e.layers.Mount(top); err != nil {
		return err
	}
	return e.layers.Unmount(top)
}

// dropBroken removes the first unmountable layer of the chain ending in
// top, and everything built on it, so the next plan rebuilds those phases.
func (e *Engine) dropBroken(top string) error {
	// Not layers.Chain: the walk goes on to the first layer it cannot
	// read, which is the one to check first.
	var chain []string // top first
	for id := top; id != ""; {
		chain = append(chain, id)
		l, err := e.layers.Get(id)
		if err != nil {
			break
		}
		id = l.Parent
	}
	broken := ""
	for i := len(chain) - 1; i >= 0; i-- { // bottom up
		if err := e.checkChain(chain[i]); err != nil {
			broken = chain[i]
			e.log.Warn("layer is damaged; removing it and its descendants", zap.String("layer", broken), zap.Error(err))
			break
		}
	}
	if broken == "" {
		return fmt.Errorf("layer %s cannot be mounted, but none of its chain is damaged", top)
	}
	return e.deleteWithDescendants(broken)
}

// deleteWithDescendants removes a layer and every layer on top of it,
// children first.
func (e *Engine) deleteWithDescendants(id string) error {
	all, doomed, err := e.withDescendants(id)
	if err != nil {
		return err
	}
	for i := len(all) - 1; i >= 0; i-- { // newest first: children before parents
		if doomed[all[i].ID] {
			e.layers.Unmount(all[i].ID)
			if err := e.layers.Delete(all[i].ID); err != nil {
				return fmt.Errorf("removing damaged layer: %w", err)
			}
		}
	}
	return nil
}

// withDescendants lists every layer (oldest first) and marks id and every
// layer built on it.
func (e *Engine) withDescendants(id string) ([]*layers.Layer, map[string]bool, error) {
	all, err := e.layers.List()
	if err != nil {
		return nil, nil, err
	}
	return all, layers.NewTree(all).Descendants(id), nil
}

package layers

import "fmt"

// CheckMount mounts a layer and releases it: a layer whose directory was
// deleted behind nixlayer's back fails here instead of half-way through a
// build that reuses it.
func (s *Store) CheckMount(id string) error {
	if _, err := s.Mount(id); err != nil {
		return err
	}
	return s.Unmount(id)
}

// DropBroken removes the first layer of the chain ending in top that
// cannot be mounted, and everything built on it, so the next plan rebuilds
// those phases. It returns that layer and why it cannot be mounted.
func (s *Store) DropBroken(top string) (broken string, why error, err error) {
	// Not Chain: the walk goes on to the first layer it cannot read, which
	// is the one to check first.
	var chain []string // top first
	for id := top; id != ""; {
		chain = append(chain, id)
		l, err := s.Get(id)
		if err != nil {
			break
		}
		id = l.Parent
	}
	for i := len(chain) - 1; i >= 0; i-- { // bottom up
		if why = s.CheckMount(chain[i]); why != nil {
			broken = chain[i]
			break
		}
	}
	if broken == "" {
		return "", nil, fmt.Errorf("layer %s cannot be mounted, but none of its chain is damaged", top)
	}
	return broken, why, s.DeleteWithDescendants(broken)
}

// DeleteWithDescendants removes a layer and every layer on top of it,
// children first.
func (s *Store) DeleteWithDescendants(id string) error {
	all, doomed, err := s.WithDescendants(id)
	if err != nil {
		return err
	}
	for i := len(all) - 1; i >= 0; i-- { // newest first: children before parents
		if doomed[all[i].ID] {
			s.Unmount(all[i].ID)
			if err := s.Delete(all[i].ID); err != nil {
				return fmt.Errorf("removing damaged layer: %w", err)
			}
		}
	}
	return nil
}

// WithDescendants lists every layer (oldest first) and marks id and every
// layer built on it.
func (s *Store) WithDescendants(id string) ([]*Layer, map[string]bool, error) {
	all, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	return all, NewTree(all).Descendants(id), nil
}

package layers

import "fmt"

// The one home of walks over layers: down a chain from a layer to its
// base (Chain, PhaseChain, NearestPhase) through anything that can get a
// layer by id, and over a whole cache by parent (Tree).

// Getter gets a layer by id: the Store, or a view of it (planning's).
type Getter interface {
	Get(id string) (*Layer, error)
}

// Chain returns the layers from the base up to top, oldest first; an
// error when a layer of it is missing.
func Chain(g Getter, top string) ([]*Layer, error) {
	var chain []*Layer
	for id := top; id != ""; {
		l, err := g.Get(id)
		if err != nil {
			return nil, err
		}
		chain = append(chain, l)
		id = l.Parent
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// WholeChain is Chain with an error that names the chain's top, for
// messages about the chain as a whole (export, push, ls).
func WholeChain(g Getter, top string) ([]*Layer, error) {
	chain, err := Chain(g, top)
	if err != nil {
		return nil, fmt.Errorf("the chain under layer %s is incomplete: %w", Short(top), err)
	}
	return chain, nil
}

// PhaseChain returns the last n phase layers of the chain ending in top,
// oldest first, passing over the layers of other kinds between them (the
// rewrite layers of a resume).
func PhaseChain(g Getter, top string, n int) ([]*Layer, error) {
	chain := make([]*Layer, 0, n)
	for id := top; id != "" && len(chain) < n; {
		l, err := g.Get(id)
		if err != nil {
			return nil, err
		}
		if l.Meta.KindOf() == KindPhase {
			chain = append(chain, l)
		}
		id = l.Parent
	}
	if len(chain) != n {
		return nil, fmt.Errorf("the chain under layer %s has %d phase layers, want %d", short(top), len(chain), n)
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// NearestPhase returns the phase layer at or under id, passing over the
// layers of other kinds (nil, nil when there is none).
func NearestPhase(g Getter, id string) (*Layer, error) {
	for id != "" {
		l, err := g.Get(id)
		if err != nil {
			return nil, err
		}
		if l.Meta.KindOf() == KindPhase {
			return l, nil
		}
		id = l.Parent
	}
	return nil, nil
}

// Tree indexes a list of layers by id and by parent, for the walks over a
// whole cache (ls, gc, pulls, removals).
type Tree struct {
	all      []*Layer
	byID     map[string]*Layer
	children map[string][]*Layer
}

// NewTree indexes all (in its order: children come in that order).
func NewTree(all []*Layer) *Tree {
	t := &Tree{all: all, byID: make(map[string]*Layer, len(all)), children: map[string][]*Layer{}}
	for _, l := range all {
		t.byID[l.ID] = l
	}
	for _, l := range all {
		if l.Parent != "" {
			t.children[l.Parent] = append(t.children[l.Parent], l)
		}
	}
	return t
}

// Get returns the layer with id, nil when the tree does not hold it.
func (t *Tree) Get(id string) *Layer { return t.byID[id] }

// Children are the layers built directly on id.
func (t *Tree) Children(id string) []*Layer { return t.children[id] }

// Roots are the layers whose parent the tree does not hold.
func (t *Tree) Roots() []*Layer {
	var roots []*Layer
	for _, l := range t.all {
		if t.byID[l.Parent] == nil {
			roots = append(roots, l)
		}
	}
	return roots
}

// Down calls f on l and each layer under it the tree holds, down to the
// base, until f returns false.
func (t *Tree) Down(l *Layer, f func(*Layer) bool) {
	for ; l != nil && f(l); l = t.byID[l.Parent] {
	}
}

// Descendants are id and every layer built on it, by id.
func (t *Tree) Descendants(id string) map[string]bool {
	marked := map[string]bool{id: true}
	stack := []string{id}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range t.children[cur] {
			if !marked[c.ID] {
				marked[c.ID] = true
				stack = append(stack, c.ID)
			}
		}
	}
	return marked
}

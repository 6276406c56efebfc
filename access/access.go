// Package access is what a user may see of a shared cache: the user a
// request serves (Viewer; nil is the engine's own user), which layers are
// private to whom, the cache's layers as that user sees them (for
// listings and for planning's lookups), a layer id the user may not read,
// and a result record as that user may see it. The engine and api apply
// it to every request the daemon serves.
package access

import (
	"fmt"
	"os"
	"strings"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/results"
)

// Viewer is the user a request serves (the daemon's caller), for what it
// may see of the shared cache. Layers found by a key the caller's own
// derivation computes are the shared cache's, as store paths are Nix's;
// but a layer whose contents are not what a key says — a phase forced by
// --from, a shell — is private to the user whose request made it
// (layers.Meta.PrivateTo), and so is every layer above it: for anyone
// else it is not listed, selected, read, diffed, opened in a shell or
// reused by --from. Results are the caller's own, and those registered in
// the Nix store (visible to all, like the store). A nil *Viewer is the
// engine's own user (root), who sees everything.
type Viewer struct{ UID int }

// Owner is whom a layer made for v is private to.
func (v *Viewer) Owner() int {
	if v == nil {
		return os.Getuid()
	}
	return v.UID
}

// privateTo reports whether a layer's contents are a user's own, and
// whose (-1: a layer made before owners were recorded, nobody's).
func privateTo(m layers.Meta) (int, bool) {
	switch {
	case m.PrivateTo != nil:
		return *m.PrivateTo, true
	case m.Status == layers.StatusDerived && (m.KindOf() == layers.KindPhase || m.KindOf() == layers.KindShell):
		return -1, true
	}
	return 0, false
}

// barredFrom reports whether a layer is private to another user than v
// (v is not nil).
func (v *Viewer) barredFrom(m layers.Meta) bool {
	uid, private := privateTo(m)
	return private && uid != v.UID
}

// Visibility answers, for the layers of one listing, whether v sees each.
type Visibility struct {
	v     *Viewer
	tree  *layers.Tree
	known map[string]bool
}

// Of is what v sees of the layers of all (one listing of the cache).
func Of(v *Viewer, all []*layers.Layer) *Visibility {
	return &Visibility{v: v, tree: layers.NewTree(all), known: map[string]bool{}}
}

// Sees reports whether no layer from l down to its base is private to
// another user.
func (vis *Visibility) Sees(l *layers.Layer) bool {
	if vis.v == nil || l == nil {
		return true
	}
	var path []string
	ok := true
	vis.tree.Down(l, func(cur *layers.Layer) bool {
		if known, done := vis.known[cur.ID]; done {
			ok = known
			return false
		}
		path = append(path, cur.ID)
		if vis.v.barredFrom(cur.Meta) {
			ok = false
			return false
		}
		return true
	})
	for _, id := range path {
		vis.known[id] = ok
	}
	return ok
}

// Filter keeps the layers v sees.
func (vis *Visibility) Filter(all []*layers.Layer) []*layers.Layer {
	if vis.v == nil {
		return all
	}
	var out []*layers.Layer
	for _, l := range all {
		if vis.Sees(l) {
			out = append(out, l)
		}
	}
	return out
}

// PrivateLayerError: a request named a layer private to another user.
type PrivateLayerError struct{ Layer string }

func (e *PrivateLayerError) Error() string {
	return fmt.Sprintf("layer %s is private to the user whose --from build or shell made it: only they can look into it", layers.Short(e.Layer))
}

// Store is the layer store as Check reads it.
type Store interface {
	layers.Getter
	Exists(id string) bool
}

// Check refuses a layer id (or a name or prefix the layer store resolves)
// that names a layer v may not see, or one whose metadata cannot be read
// (a layer being created). An id naming nothing passes: reading it then
// says the layer is gone.
func Check(st Store, id string, v *Viewer) error {
	if v == nil {
		return nil
	}
	l, err := st.Get(id)
	if err != nil {
		if st.Exists(id) {
			return &PrivateLayerError{Layer: id}
		}
		return nil
	}
	// Down its chain only: an editor reads a layer in bursts of requests.
	chain, err := layers.Chain(st, l.ID)
	if err != nil {
		return &layertree.GoneError{Layer: l.ID} // its chain is incomplete
	}
	for _, cur := range chain {
		if v.barredFrom(cur.Meta) {
			return &PrivateLayerError{Layer: l.ID}
		}
	}
	return nil
}

// Cache is the layer cache as planning reads it: *layers.Store, or a
// table in tests.
type Cache interface {
	Lookup(key string) (*layers.Layer, bool)
	Get(id string) (*layers.Layer, error)
	List() ([]*layers.Layer, error)
	Size(id string) int64
}

// Visible is c as vis's viewer sees it: the layers it does not see are
// neither found by a key nor listed.
func Visible(c Cache, vis *Visibility) Cache { return visible{Cache: c, vis: vis} }

type visible struct {
	Cache
	vis *Visibility
}

func (c visible) Lookup(key string) (*layers.Layer, bool) {
	l, ok := c.Cache.Lookup(key)
	if !ok || !c.vis.Sees(l) {
		return nil, false
	}
	return l, true
}

func (c visible) List() ([]*layers.Layer, error) {
	all, err := c.Cache.List()
	if err != nil {
		return nil, err
	}
	return c.vis.Filter(all), nil
}

// inStore reports whether the result is registered in the Nix store
// (every output there), which makes it visible to every user.
func inStore(r *results.Record) bool {
	dir := nixstore.StoreDir() + "/"
	for _, p := range r.Outputs {
		if !strings.HasPrefix(p, dir) {
			return false
		}
	}
	return len(r.Outputs) > 0
}

// ResultFor is r as v may see it: its own in full; another user's when in
// the Nix store, without whose it is (owner, result links, results
// directory); nil for another user's result outside the store.
func (v *Viewer) ResultFor(r *results.Record) *results.Record {
	switch {
	case v == nil || r == nil || (r.Owner != nil && r.Owner.UID == v.UID):
		return r
	case !inStore(r):
		return nil
	}
	c := *r
	c.Owner, c.Links, c.ResultsDir = nil, nil, ""
	return &c
}

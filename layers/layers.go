// Package layers keeps build snapshots as copy-on-write layers in a
// containers-storage store. A layer becomes findable by its cache key only
// after it has been committed, so a half-written layer is never reused.
package layers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/internal/proc"
)

// Status says what a layer holds.
type Status string

const (
	// StatusRunning: a phase is being written into the layer right now (or
	// its writer died); never reused.
	StatusRunning Status = "running"
	// StatusComplete: the phase finished and the layer matches its key.
	StatusComplete Status = "complete"
	// StatusFailed: the phase failed; kept for inspection, never reused.
	StatusFailed Status = "failed"
	// StatusDerived: built from reused layers without a key match (forced
	// restart, rewrite); kept for inspection, never reused as a cache hit.
	StatusDerived Status = "derived"
	// StatusStale: an audit found the layer's content does not match its
	// key (a clean build differs); kept for inspection, never reused.
	StatusStale Status = "stale"
)

// keyPrefix marks the layer name that makes a layer a cache hit.
const keyPrefix = "key-"

// Kind is what made a layer.
type Kind string

const (
	// KindPhase is a phase of a build (or a whole build in one layer); only
	// these are cache hits and earlier builds.
	KindPhase Kind = "phase"
	// KindRewrite adapts the reused layers below it to new output paths.
	KindRewrite Kind = "rewrite"
	// KindLearnScratch is a phase run again with a synthetic output path
	// to learn the path map; removed when learning ends.
	KindLearnScratch Kind = "learn-scratch"
	// KindShell is the tree of a shell in a phase's state (kept with --keep).
	KindShell Kind = "shell"
)

// Meta is what nixlayer records about a layer, kept in the layer's
// metadata so the store's own index is the only database.
type Meta struct {
	Status  Status `json:"status"`
	Key     string `json:"key,omitempty"`
	Phase   string `json:"phase"`
	Index   int    `json:"index"`
	DrvPath string `json:"drvPath"`
	DrvName string `json:"drvName"`
	// Package groups the builds of one package across versions (pname, or
	// the name when there is none).
	Package  string            `json:"package,omitempty"`
	Outputs  map[string]string `json:"outputs,omitempty"` // output name → path the layer was built with
	Owner    int               `json:"owner,omitempty"`   // pid of the writer while running
	Started  time.Time         `json:"started"`
	Duration time.Duration     `json:"duration,omitempty"`
	// Attrs are digests of the attributes this phase owns, so a later plan
	// can name the attribute that changed.
	Attrs    map[string]string `json:"attrs,omitempty"`
	Verified *bool             `json:"verified,omitempty"`
	Kind     Kind              `json:"kind,omitempty"`
	// Note describes the layer for people (e.g. the rewrite's method).
	Note string `json:"note,omitempty"`
	// PrivateTo is the uid whose request made a layer whose contents are
	// not what a key says (a phase forced by --from, a shell): the layer
	// and those above it are that user's alone (runner.Viewer).
	PrivateTo *int `json:"privateTo,omitempty"`
}

// KindOf is the layer's kind; layers written before kinds were recorded
// get theirs from what they do record.
func (m Meta) KindOf() Kind {
	switch {
	case m.Kind != "":
		return m.Kind
	case m.Phase != "":
		return KindPhase
	case strings.HasPrefix(m.Note, "rewrite"):
		return KindRewrite
	case strings.HasPrefix(m.Note, "learn"):
		return KindLearnScratch
	default:
		return KindShell
	}
}

// IsVerified is false only for a layer marked not verified (it rests on an
// inexact rewrite, --from or an untrusted pull); layers recorded before the
// mark existed count as verified.
func (m Meta) IsVerified() bool { return m.Verified == nil || *m.Verified }

// Label names the layer in messages: its phase, else its kind.
func (m Meta) Label() string {
	if m.Phase != "" {
		return m.Phase
	}
	return string(m.KindOf())
}

// Layer is a stored layer with its metadata.
type Layer struct {
	ID      string
	Parent  string
	Created time.Time
	Meta    Meta
}

// Store wraps a containers-storage store rooted in a nixlayer cache directory.
type Store struct {
	s    storage.Store
	root string
}

// Open opens (creating if needed) the layer store under root, preferring the
// overlay driver and falling back to vfs where overlay cannot work (e.g. on
// an overlayfs backing filesystem).
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create cache directory %s: %w (use --cache DIR or fix its permissions)", root, err)
	}
	if err := checkWritable(root); err != nil {
		return nil, err
	}
	// One process at a time sets the store up: the overlay driver makes its
	// home a private bind mount, and two doing it at once stack two mounts,
	// of which shutdown removes one.
	lock, err := os.OpenFile(filepath.Join(root, "init.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", root, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking cache directory %s: %w", root, err)
	}
	var lastErr error
	for _, driver := range driverOrder() {
		opts := types.StoreOptions{
			RunRoot:         filepath.Join(root, "run"),
			GraphRoot:       filepath.Join(root, "storage"),
			GraphDriverName: driver,
		}
		if driver == "overlay" {
			// No private bind mount of the driver's home: with several
			// nixlayer processes on one cache (hook, CLI, language server),
			// whichever exits last cannot tell whether to remove it.
			opts.GraphDriverOptions = []string{"overlay.skip_mount_home=true"}
		}
		s, err := storage.GetStore(opts)
		if err != nil {
			lastErr = err
			continue
		}
		if driver == "overlay" {
			if err := probe(s); err != nil {
				s.Shutdown(true)
				lastErr = err
				continue
			}
		}
		return &Store{s: s, root: root}, nil
	}
	return nil, fmt.Errorf("cannot open layer store in %s: %w", root, lastErr)
}

func driverOrder() []string {
	if d := os.Getenv("NIXLAYER_STORAGE_DRIVER"); d != "" {
		return []string{d}
	}
	return []string{"overlay", "vfs"}
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("cache directory %s is not writable: %w (use --cache DIR or run as its owner)", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// probe mounts a throwaway layer: overlay may initialise but still fail at mount time.
func probe(s storage.Store) error {
	l, err := s.CreateLayer("", "", nil, "", true, nil)
	if err != nil {
		return err
	}
	defer s.DeleteLayer(l.ID)
	if _, err := s.Mount(l.ID, ""); err != nil {
		return err
	}
	_, err = s.Unmount(l.ID, true)
	return err
}

// Driver is the graph driver in use ("overlay" or "vfs").
func (st *Store) Driver() string { return st.s.GraphDriverName() }

// Close releases the store.
func (st *Store) Close() { st.s.Shutdown(false) }

// Create makes a new layer on top of parent ("" for an empty base) and marks
// it running, owned by this process.
func (st *Store) Create(parent string, meta Meta) (*Layer, error) {
	meta.Status = StatusRunning
	meta.Owner = os.Getpid()
	if meta.Started.IsZero() {
		meta.Started = time.Now()
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	l, err := st.s.CreateLayer("", parent, nil, "", true, nil)
	if err != nil {
		return nil, fmt.Errorf("create layer on %s: %w", short(parent), err)
	}
	if err := st.s.SetMetadata(l.ID, string(data)); err != nil {
		st.s.DeleteLayer(l.ID)
		return nil, fmt.Errorf("write metadata of layer %s: %w", short(l.ID), err)
	}
	return &Layer{ID: l.ID, Parent: parent, Created: l.Created, Meta: meta}, nil
}

// Mount returns the host path of the layer's merged tree.
func (st *Store) Mount(id string) (string, error) {
	p, err := st.s.Mount(id, "")
	if err != nil {
		return "", fmt.Errorf("mount layer %s: %w", short(id), err)
	}
	return p, nil
}

// Unmount releases one mount of the layer.
func (st *Store) Unmount(id string) error {
	if _, err := st.s.Unmount(id, false); err != nil {
		return fmt.Errorf("unmount layer %s: %w", short(id), err)
	}
	return nil
}

// Finish records the final metadata of a layer. A complete layer with a key
// gets its key as a name last, which is what makes it a cache hit.
func (st *Store) Finish(id string, meta Meta) error {
	meta.Owner = 0
	data, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := st.s.SetMetadata(id, string(data)); err != nil {
		return fmt.Errorf("write metadata of layer %s: %w", short(id), err)
	}
	fault.Point(fault.BeforeName)
	if meta.Status == StatusComplete && meta.Key != "" {
		if err := st.s.AddNames(id, []string{keyPrefix + meta.Key}); err != nil {
			return fmt.Errorf("name layer %s: %w", short(id), err)
		}
	}
	return nil
}

// Retire makes a layer stale: it loses the key name that made it a cache
// hit (so no lookup finds it again) and records why; it stays for
// inspection until gc removes it.
func (st *Store) Retire(id, why string) error {
	l, err := st.Get(id)
	if err != nil {
		return err
	}
	meta := l.Meta
	meta.Status = StatusStale
	meta.Note = why
	data, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	// Metadata first: a layer whose name survives a crash here is still
	// refused by Lookup, which wants a complete layer.
	if err := st.s.SetMetadata(id, string(data)); err != nil {
		return fmt.Errorf("write metadata of layer %s: %w", short(id), err)
	}
	if l.Meta.Key != "" {
		if err := st.s.RemoveNames(id, []string{keyPrefix + l.Meta.Key}); err != nil {
			return fmt.Errorf("unname layer %s: %w", short(id), err)
		}
	}
	return nil
}

// Lookup finds the complete layer for a cache key.
func (st *Store) Lookup(key string) (*Layer, bool) {
	l, err := st.s.Layer(keyPrefix + key)
	if err != nil {
		return nil, false
	}
	layer, err := decode(l)
	if err != nil || layer.Meta.Status != StatusComplete || layer.Meta.Key != key {
		return nil, false
	}
	return layer, true
}

// Get returns one layer by id.
func (st *Store) Get(id string) (*Layer, error) {
	l, err := st.s.Layer(id)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", short(id), err)
	}
	return decode(l)
}

// List returns all layers, oldest first.
func (st *Store) List() ([]*Layer, error) {
	ls, err := st.s.Layers()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	var out []*Layer
	for i := range ls {
		l, err := decode(&ls[i])
		if err != nil {
			continue // not ours or unreadable: ignore rather than fail listing
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Delete removes a layer (and fails if it has children).
func (st *Store) Delete(id string) error {
	if err := st.s.DeleteLayer(id); err != nil {
		return fmt.Errorf("delete layer %s: %w", short(id), err)
	}
	return nil
}

// Size is the layer's own disk usage (its diff against the parent).
func (st *Store) Size(id string) int64 {
	n, err := st.s.DiffSize("", id)
	if err != nil {
		return -1
	}
	return n
}

// SetData stores a named blob (shell state, log) with the layer.
func (st *Store) SetData(id, key string, data []byte) error {
	if err := st.s.SetLayerBigData(id, key, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("store %s of layer %s: %w", key, short(id), err)
	}
	return nil
}

// Data reads a named blob of the layer.
func (st *Store) Data(id, key string) ([]byte, error) {
	rc, err := st.s.LayerBigData(id, key)
	if err != nil {
		return nil, fmt.Errorf("read %s of layer %s: %w", key, short(id), err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// RemoveStale deletes layers whose writer died before finishing them (a
// kill -9 mid-phase), children first, so they can never be mistaken for a
// result. It returns how many were removed.
func (st *Store) RemoveStale() (int, error) {
	all, err := st.List()
	if err != nil {
		return 0, err
	}
	stale := map[string]bool{}
	for _, l := range all {
		if l.Meta.Status == StatusRunning && !proc.Alive(l.Meta.Owner) {
			stale[l.ID] = true
		}
	}
	// A layer on top of a stale one is stale too.
	for changed := true; changed; {
		changed = false
		for _, l := range all {
			if !stale[l.ID] && stale[l.Parent] {
				stale[l.ID] = true
				changed = true
			}
		}
	}
	n := 0
	var errs []error
	for i := len(all) - 1; i >= 0; i-- { // newest (children) first
		if stale[all[i].ID] {
			st.s.Unmount(all[i].ID, true)
			if err := st.s.DeleteLayer(all[i].ID); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

func decode(l *storage.Layer) (*Layer, error) {
	var m Meta
	if l.Metadata == "" {
		return nil, fmt.Errorf("layer %s has no nixlayer metadata", short(l.ID))
	}
	if err := json.Unmarshal([]byte(l.Metadata), &m); err != nil {
		return nil, fmt.Errorf("layer %s metadata: %w", short(l.ID), err)
	}
	return &Layer{ID: l.ID, Parent: l.Parent, Created: l.Created, Meta: m}, nil
}

func short(id string) string {
	if id == "" {
		return "(base)"
	}
	if len(id) > 12 && !strings.Contains(id, "/") {
		return id[:12]
	}
	return id
}

// ForceUnmount drops every mount of a layer (mounts a killed process left).
func (st *Store) ForceUnmount(id string) error {
	if _, err := st.s.Unmount(id, true); err != nil {
		return fmt.Errorf("unmount layer %s: %w", short(id), err)
	}
	return nil
}

// StatusWord is the layer's state in one word, as ls and gc show it:
// cached, rewrite, kept (a shell's), forced, or the status itself.
func (l *Layer) StatusWord() string {
	switch l.Meta.Status {
	case StatusComplete:
		return "cached"
	case StatusDerived:
		switch l.Meta.KindOf() {
		case KindRewrite:
			return "rewrite"
		case KindShell:
			return "kept"
		}
		return "forced"
	}
	return string(l.Meta.Status)
}

// Package layertree lets a face look into a layer's tree — the build
// directory and the outputs as a phase left them — without a mount of its
// own: root (the engine, or the daemon for users) mounts the layer through
// the layer store for as long as it is being read, and answers with file
// metadata, contents and what the phase changed. Paths are the ones the
// builder saw: /build/…, /nix/store/…-hello-1/…. It also mounts a layer on
// the host for `nixlayer mount` and keeps the record of those mounts. The
// engine owns one Trees per cache; api and the CLI reach it through it.
package layertree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
)

// FileType is the kind of a file in a layer's tree.
type FileType string

const (
	FileRegular FileType = "file"
	FileDir     FileType = "dir"
	FileSymlink FileType = "symlink"
	FileOther   FileType = "other" // devices, sockets, fifos
)

// FileInfo describes one file of a layer's tree.
type FileInfo struct {
	Name    string    `json:"name"`
	Path    string    `json:"path"` // as the builder saw it
	Type    FileType  `json:"type"`
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"` // permission bits
	ModTime time.Time `json:"mtime"`
	// Target is a symlink's target; TargetType what it points to inside
	// the tree ("" when that is outside the layer, an input, or nothing).
	Target     string   `json:"target,omitempty"`
	TargetType FileType `json:"targetType,omitempty"`
}

// Files is a path of a layer's tree and, for a directory, its entries.
type Files struct {
	Layer   string     `json:"layer"`
	Info    FileInfo   `json:"info"`
	Entries []FileInfo `json:"entries,omitempty"`
}

// Data is a piece of a file of a layer's tree.
type Data struct {
	Data []byte `json:"data"` // base64 in JSON
	Size int64  `json:"size"` // the whole file's
	EOF  bool   `json:"eof"`  // Data reaches the end of the file
}

// MaxReadChunk bounds one Read answer; callers read on from
// offset+len(Data).
const MaxReadChunk = 4 << 20

// Change is one file a phase added, changed or removed.
type Change struct {
	Path string            `json:"path"`
	Kind layers.ChangeKind `json:"kind"`
	Type FileType          `json:"type"`
}

// Diff is what a phase's layer changed against the layer of the phase
// before it (the empty tree for the first phase).
type Diff struct {
	Layer     string   `json:"layer"`
	Phase     string   `json:"phase"`
	Base      string   `json:"base,omitempty"`
	BasePhase string   `json:"basePhase,omitempty"`
	Changes   []Change `json:"changes"`
	// Truncated: there were more than MaxDiffChanges changes.
	Truncated bool `json:"truncated,omitempty"`
}

// MaxDiffChanges bounds a Diff.
const MaxDiffChanges = 20000

// GoneError: the layer a request names is not in the cache (any
// more): gc removed it, or a newer build of the phase replaced it.
type GoneError struct{ Layer string }

func (e *GoneError) Error() string {
	return fmt.Sprintf("layer %s is no longer in the layer cache (removed by nixlayer gc, or replaced by a newer build): build the phase again to look at its tree", layers.Short(e.Layer))
}

// viewIdle is how long a layer stays mounted after its last read: an
// editor's explorer asks for a directory, its entries and a file in a
// burst. A mounted layer is in use, so gc keeps it meanwhile.
const viewIdle = 10 * time.Second

// Trees are the layers of one cache's store, read while mounted (a view
// per layer, shared by concurrent readers, unmounted after viewIdle) and
// mounted on the host for `nixlayer mount`.
type Trees struct {
	layers   *layers.Store
	cacheDir string
	log      *zap.Logger
	mu       sync.Mutex
	open     map[string]*layerView
}

// New gives the trees of the layers of st, a store in cacheDir.
func New(st *layers.Store, cacheDir string, log *zap.Logger) *Trees {
	return &Trees{layers: st, cacheDir: cacheDir, log: log}
}

type layerView struct {
	root  *os.Root
	users int
	idle  *time.Timer
}

// withView runs f on the layer's mounted tree.
func (t *Trees) withView(id string, f func(*os.Root) error) error {
	v, err := t.acquireView(id)
	if err != nil {
		return err
	}
	defer t.releaseView(id, v)
	return f(v.root)
}

func (t *Trees) acquireView(id string) (*layerView, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v := t.open[id]; v != nil {
		v.users++
		if v.idle != nil {
			v.idle.Stop()
			v.idle = nil
		}
		return v, nil
	}
	if !t.layers.Exists(id) {
		return nil, &GoneError{Layer: id}
	}
	dir, err := t.layers.Mount(id)
	if err != nil {
		if !t.layers.Exists(id) {
			return nil, &GoneError{Layer: id}
		}
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.layers.Unmount(id)
		return nil, fmt.Errorf("opening the tree of layer %s: %w", layers.Short(id), err)
	}
	if t.open == nil {
		t.open = map[string]*layerView{}
	}
	v := &layerView{root: root, users: 1}
	t.open[id] = v
	return v, nil
}

func (t *Trees) releaseView(id string, v *layerView) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v.users--
	if v.users > 0 {
		return
	}
	v.idle = time.AfterFunc(viewIdle, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if v.users == 0 && t.open[id] == v {
			t.closeView(id, v)
		}
	})
}

// closeView unmounts a view; views.mu is held.
func (t *Trees) closeView(id string, v *layerView) {
	delete(t.open, id)
	v.root.Close()
	if err := t.layers.Unmount(id); err != nil {
		t.log.Warn("unmounting a layer after reading it", zap.Error(err))
	}
}

// Close unmounts every view (the engine closes).
func (t *Trees) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, v := range t.open {
		if v.idle != nil {
			v.idle.Stop()
		}
		t.closeView(id, v)
	}
}

// treePath maps a path as the builder saw it to the layer's tree (build/,
// store/, tmp/). The directories above the store directory (/nix) are not
// in the layer: for them virtual lists their one entry. ok is false for a
// path outside the tree.
func treePath(storeDir, p string) (rel string, virtual []string, ok bool) {
	p = path.Clean("/" + p)
	if p == "/" {
		return "", nil, true
	}
	for _, m := range []struct{ sandbox, tree string }{{"/build", "build"}, {"/tmp", "tmp"}, {storeDir, "store"}} {
		if p == m.sandbox {
			return m.tree, nil, true
		}
		if rest, found := strings.CutPrefix(p, m.sandbox+"/"); found {
			return m.tree + "/" + rest, nil, true
		}
	}
	if rest, found := strings.CutPrefix(storeDir, p+"/"); found {
		next, _, _ := strings.Cut(rest, "/")
		return "", []string{next}, true
	}
	return "", nil, false
}

// sandboxPath is treePath's inverse for a path of the layer's tree.
func sandboxPath(storeDir, rel string) string {
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	top, rest, _ := strings.Cut(rel, "/")
	base := "/" + top
	if top == "store" {
		base = storeDir
	}
	if rest == "" {
		return base
	}
	return base + "/" + rest
}

func fileType(m fs.FileMode) FileType {
	switch {
	case m.IsRegular():
		return FileRegular
	case m.IsDir():
		return FileDir
	case m&fs.ModeSymlink != 0:
		return FileSymlink
	}
	return FileOther
}

// Files describes a path of the layer's tree and lists a directory.
// The root holds /build, the store directory with the outputs, and /tmp
// when the build left something there.
func (t *Trees) Files(id, p string) (*Files, error) {
	storeDir := nixstore.StoreDir()
	rel, virtual, ok := treePath(storeDir, p)
	p = path.Clean("/" + p)
	if !ok {
		return nil, fmt.Errorf("%s is not in the tree of a layer (it holds /build and %s)", p, storeDir)
	}
	res := &Files{Layer: id}
	err := t.withView(id, func(root *os.Root) error {
		if rel == "" { // the root or a directory above the store
			names := virtual
			if p == "/" {
				names = []string{"build", strings.Split(strings.TrimPrefix(storeDir, "/"), "/")[0]}
				if ents, err := readDir(root, "tmp"); err == nil && len(ents) > 0 {
					names = append(names, "tmp")
				}
			}
			res.Info = FileInfo{Name: path.Base(p), Path: p, Type: FileDir, Mode: 0o755}
			for _, n := range names {
				info, err := fileInfo(root, storeDir, path.Join(p, n))
				if err != nil {
					info = &FileInfo{Name: n, Path: path.Join(p, n), Type: FileDir, Mode: 0o755}
				}
				res.Entries = append(res.Entries, *info)
			}
			return nil
		}
		info, err := fileInfo(root, storeDir, p)
		if err != nil {
			return err
		}
		res.Info = *info
		if info.Type != FileDir {
			return nil
		}
		ents, err := readDir(root, rel)
		if err != nil {
			return fmt.Errorf("listing %s: %w", p, err)
		}
		res.Entries = []FileInfo{}
		for _, de := range ents {
			child, err := fileInfo(root, storeDir, path.Join(p, de.Name()))
			if err != nil {
				continue // vanished meanwhile (a running phase's layer)
			}
			res.Entries = append(res.Entries, *child)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func readDir(root *os.Root, rel string) ([]fs.DirEntry, error) {
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, err
}

// fileInfo describes the file at sandbox path p (a symlink itself, with
// what it points to).
func fileInfo(root *os.Root, storeDir, p string) (*FileInfo, error) {
	rel, _, ok := treePath(storeDir, p)
	if !ok || rel == "" {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return nil, notFound(p, err)
	}
	info := &FileInfo{Name: path.Base(p), Path: p, Type: fileType(fi.Mode()), Size: fi.Size(), Mode: uint32(fi.Mode().Perm()), ModTime: fi.ModTime()}
	if info.Type == FileSymlink {
		info.Target, _ = root.Readlink(rel)
		if _, tfi, err := resolve(root, storeDir, p); err == nil {
			info.TargetType = fileType(tfi.Mode())
		}
	}
	return info, nil
}

func notFound(p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// resolve follows the symlinks of sandbox path p as the builder would see
// them, within the layer's tree; it returns the tree path it ends at.
func resolve(root *os.Root, storeDir, p string) (string, fs.FileInfo, error) {
	first := p // the path asked for, for messages
	for hops := 0; hops < 40; hops++ {
		rel, _, ok := treePath(storeDir, p)
		var fi fs.FileInfo
		err := fs.ErrNotExist
		if ok && rel != "" {
			fi, err = root.Lstat(rel)
		}
		switch {
		case err != nil && p == first:
			return "", nil, notFound(p, err)
		case err != nil:
			return "", nil, fmt.Errorf("%s links to %s, which is not in this layer (an input of the build, a system path, or missing)", first, p)
		case fi.Mode()&fs.ModeSymlink == 0:
			return rel, fi, nil
		}
		target, err := root.Readlink(rel)
		if err != nil {
			return "", nil, err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return "", nil, fmt.Errorf("%s: too many levels of symbolic links", first)
}

// Read reads up to n bytes (at most MaxReadChunk; 0 for that
// much) from offset of the file at sandbox path p, following symlinks
// inside the layer.
func (t *Trees) Read(id, p string, offset, n int64) (*Data, error) {
	storeDir := nixstore.StoreDir()
	p = path.Clean("/" + p)
	if n <= 0 || n > MaxReadChunk {
		n = MaxReadChunk
	}
	if offset < 0 {
		return nil, fmt.Errorf("reading %s: negative offset", p)
	}
	var res *Data
	err := t.withView(id, func(root *os.Root) error {
		rel, fi, err := resolve(root, storeDir, p)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file (%s)", p, fileType(fi.Mode()))
		}
		f, err := root.Open(rel)
		if err != nil {
			return notFound(p, err)
		}
		defer f.Close()
		buf := make([]byte, min(n, max(fi.Size()-offset, 0)))
		k, err := f.ReadAt(buf, offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		res = &Data{Data: buf[:k], Size: fi.Size(), EOF: offset+int64(k) >= fi.Size()}
		return nil
	})
	return res, err
}

// Diff lists what a phase's layer added, changed and removed against
// the layer of the phase before it (through a rewrite layer between them,
// whose changes count too). Added and changed directories are not listed,
// their files are.
func (t *Trees) Diff(id string) (*Diff, error) {
	l, err := t.layers.Get(id)
	if err != nil {
		if !t.layers.Exists(id) {
			return nil, &GoneError{Layer: id}
		}
		return nil, err
	}
	res := &Diff{Layer: id, Changes: []Change{}}
	if p, err := layers.NearestPhase(t.layers, l.ID); err == nil && p != nil {
		res.Phase = p.Meta.Phase
	}
	base, err := layers.NearestPhase(t.layers, l.Parent)
	if err != nil {
		return nil, err
	}
	if base != nil {
		res.Base, res.BasePhase = base.ID, base.Meta.Phase
	}
	changes, err := t.layers.Changes(res.Base, id)
	if err != nil {
		if !t.layers.Exists(id) {
			return nil, &GoneError{Layer: id}
		}
		return nil, err
	}
	slices.SortFunc(changes, func(a, b layers.Change) int { return strings.Compare(a.Path, b.Path) })
	storeDir := nixstore.StoreDir()
	typeIn := func(layer, p string) FileType {
		typ := FileOther
		if layer == "" {
			return typ
		}
		t.withView(layer, func(root *os.Root) error {
			if rel, _, ok := treePath(storeDir, p); ok && rel != "" {
				if fi, err := root.Lstat(rel); err == nil {
					typ = fileType(fi.Mode())
				}
			}
			return nil
		})
		return typ
	}
	for _, c := range changes {
		p := sandboxPath(storeDir, c.Path)
		fc := Change{Path: p, Kind: c.Kind}
		if c.Kind == layers.ChangeRemoved {
			fc.Type = typeIn(res.Base, p)
		} else {
			fc.Type = typeIn(id, p)
		}
		if fc.Type == FileDir && c.Kind != layers.ChangeRemoved {
			continue // its files are listed
		}
		if len(res.Changes) == MaxDiffChanges {
			res.Truncated = true
			break
		}
		res.Changes = append(res.Changes, fc)
	}
	return res, nil
}

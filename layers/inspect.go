package layers

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"

	"github.com/nixlayer/nixlayer/internal/fault"
)

// MountCount is how many mounts of the layer the store knows of (in any
// process: `nixlayer mount` leaves one until `nixlayer umount`).
func (st *Store) MountCount(id string) int {
	l, err := st.s.Layer(id)
	if err != nil {
		return 0
	}
	return l.MountCount
}

// DataNames lists the named blobs stored with the layer.
func (st *Store) DataNames(id string) []string {
	l, err := st.s.Layer(id)
	if err != nil {
		return nil
	}
	return append([]string(nil), l.BigDataNames...)
}

// Diff is the layer's change against its parent as an uncompressed tar
// stream (OCI layer format, whiteouts included).
func (st *Store) Diff(id string) (io.ReadCloser, error) {
	l, err := st.s.Layer(id)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", short(id), err)
	}
	c := archive.Uncompressed
	rc, err := st.s.Diff(l.Parent, id, &storage.DiffOptions{Compression: &c})
	if err != nil {
		return nil, fmt.Errorf("diff of layer %s: %w", short(id), err)
	}
	return rc, nil
}

// Apply creates a layer on parent from a tar stream through the store's
// own ApplyDiff, then records its metadata and named blobs. The layer is
// marked running (owned by this process) until it is complete and gets its
// key name last (Finish), so a layer interrupted mid-apply — a broken
// stream, a kill -9 — is never a cache hit and the next run removes it.
func (st *Store) Apply(parent string, meta Meta, diff io.Reader, data map[string][]byte) (*Layer, error) {
	l, err := st.Create(parent, meta)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Layer, error) {
		st.s.DeleteLayer(l.ID)
		return nil, err
	}
	if _, err := st.s.ApplyDiff(l.ID, diff); err != nil {
		return fail(fmt.Errorf("applying layer on %s: %w", short(parent), err))
	}
	fault.Point(fault.InApply)
	for k, v := range data {
		if err := st.SetData(l.ID, k, v); err != nil {
			return fail(err)
		}
	}
	if err := st.Finish(l.ID, meta); err != nil {
		return fail(err)
	}
	return st.Get(l.ID)
}

// DiskUsage is the disk space the layer takes on its own, as du counts it
// (allocated blocks): its directory in the graph driver and its metadata
// directory. Deleting the layer frees this much.
func (st *Store) DiskUsage(id string) int64 {
	graph := filepath.Join(st.root, "storage")
	drv := st.Driver()
	dirs := []string{filepath.Join(graph, drv+"-layers", id)}
	switch drv {
	case "vfs":
		dirs = append(dirs, filepath.Join(graph, "vfs", "dir", id))
	default:
		dirs = append(dirs, filepath.Join(graph, drv, id))
		// overlay's short name for the layer's diff directory
		if link, err := os.ReadFile(filepath.Join(graph, drv, id, "link")); err == nil && len(link) > 0 && !strings.ContainsAny(string(link), "/.") {
			dirs = append(dirs, filepath.Join(graph, drv, "l", strings.TrimSpace(string(link))))
		}
	}
	if extra, err := filepath.Glob(filepath.Join(graph, drv+"-layers", id+".*")); err == nil {
		dirs = append(dirs, extra...)
	}
	return DiskUsage(dirs...)
}

// DiskUsage sums the allocated size of files under the paths like `du`
// (hard links once; mount points of other filesystems are not entered).
func DiskUsage(paths ...string) int64 {
	seen := map[[2]uint64]bool{}
	var total int64
	for _, root := range paths {
		rootFi, err := os.Lstat(root)
		if err != nil {
			continue
		}
		rootDev := rootFi.Sys().(*syscall.Stat_t).Dev
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			s := fi.Sys().(*syscall.Stat_t)
			if s.Dev != rootDev {
				return filepath.SkipDir
			}
			k := [2]uint64{s.Dev, s.Ino}
			if !seen[k] {
				seen[k] = true
				total += s.Blocks * 512
			}
			return nil
		})
	}
	return total
}

// Short is the 12-character form of a layer id users see.
func Short(id string) string { return short(id) }

// FreeSpace is what the filesystem of dir has free for this user.
func FreeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// FormatSize renders a layer's size for people: KiB below 1 MiB, MiB
// above, "size unknown" for a negative (unmeasured) size.
func FormatSize(n int64) string {
	switch {
	case n < 0:
		return "size unknown"
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// FindID resolves a full layer id or a unique prefix of at least 6 hex
// digits.
func (st *Store) FindID(prefix string) (string, bool) {
	if len(prefix) < 6 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return "", false
	}
	ls, err := st.s.Layers()
	if err != nil {
		return "", false
	}
	found := ""
	for _, l := range ls {
		if strings.HasPrefix(l.ID, prefix) {
			if found != "" {
				return "", false
			}
			found = l.ID
		}
	}
	return found, found != ""
}

// Change is one path a layer changed against another, as containers
// storage reports it (Path is relative to the layer's root, "/"-led).
type Change struct {
	Path string
	Kind ChangeKind
}

// ChangeKind says how a path changed.
type ChangeKind string

const (
	ChangeAdded   ChangeKind = "added"
	ChangeChanged ChangeKind = "changed"
	ChangeRemoved ChangeKind = "removed"
)

// Changes lists what layer to changed against layer from ("" for its
// parent): the driver's own diff when from is the parent, else a walk of
// both trees (containers storage's naive diff).
func (st *Store) Changes(from, to string) ([]Change, error) {
	cs, err := st.s.Changes(from, to)
	if err != nil {
		return nil, fmt.Errorf("changes of layer %s against %s: %w", short(to), short(from), err)
	}
	out := make([]Change, 0, len(cs))
	for _, c := range cs {
		k := ChangeChanged
		switch c.Kind {
		case archive.ChangeAdd:
			k = ChangeAdded
		case archive.ChangeDelete:
			k = ChangeRemoved
		}
		out = append(out, Change{Path: c.Path, Kind: k})
	}
	return out, nil
}

// Exists reports whether the store still holds the layer.
func (st *Store) Exists(id string) bool { return st.s.Exists(id) }

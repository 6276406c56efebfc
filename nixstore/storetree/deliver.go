package storetree

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"go.podman.io/storage/pkg/ioutils"

	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/nixstore"
)

// DeliverOption changes how Deliver works.
type DeliverOption func(*deliverConfig)

type deliverConfig struct {
	locksHeld bool
}

// LocksHeldByCaller tells Deliver not to take the output path locks
// because they are already held: by Nix itself when Deliver runs inside
// a build hook, or by the caller via nixstore.LockPaths. Taking them again would
// wait forever.
func LocksHeldByCaller() DeliverOption {
	return func(c *deliverConfig) { c.locksHeld = true }
}

// Deliver installs trees built outside Nix as valid store paths.
// outputs maps each output store path to the host directory (or file)
// holding its built tree; deriver is the .drv path; candidates are the
// store paths the outputs may refer to (normally the input closure).
//
// It locks the output paths, skips outputs that are already valid,
// removes invalid leftovers at the output paths, copies each tree into
// place, canonicalises its metadata, scans it for references (to the
// candidates and to all outputs), computes its NAR hash, and registers
// all new outputs with one nix-store call; then unlocks.
func Deliver(ctx context.Context, outputs map[string]string, deriver string, candidates []string, opts ...DeliverOption) (err error) {
	var cfg deliverConfig
	for _, o := range opts {
		o(&cfg)
	}
	paths := make([]string, 0, len(outputs))
	for p := range outputs {
		if !nixstore.IsStorePath(p) {
			return fmt.Errorf("delivering %s: not a store path under %s", p, nixstore.StoreDir())
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil
	}
	if !cfg.locksHeld {
		unlock, err := nixstore.LockPaths(ctx, paths)
		if err != nil {
			return fmt.Errorf("delivering outputs of %s: %w", deriver, err)
		}
		defer unlock()
	}
	invalid, err := nixstore.InvalidPaths(ctx, paths)
	if err != nil {
		return fmt.Errorf("delivering outputs of %s: %w", deriver, err)
	}
	if len(invalid) == 0 {
		return nil
	}
	scanFor := append(append([]string(nil), candidates...), paths...)
	var infos []nixstore.PathInfo
	for _, p := range invalid {
		src, ok := outputs[p]
		if !ok {
			return fmt.Errorf("delivering outputs of %s: nix-store reported an unexpected invalid path %s", deriver, p)
		}
		if err := RemoveTree(p); err != nil {
			return fmt.Errorf("delivering %s: %w", p, err)
		}
		// On failure, leave no half-delivered tree behind.
		defer func(p string) {
			if err != nil {
				_ = RemoveTree(p)
			}
		}(p)
		if err := CopyTree(src, p); err != nil {
			return fmt.Errorf("delivering %s from %s: %w", p, src, err)
		}
		if err := Canonicalise(p); err != nil {
			return fmt.Errorf("delivering %s: %w", p, err)
		}
		info, err := hashAndScan(p, scanFor)
		if err != nil {
			return fmt.Errorf("delivering %s: %w", p, err)
		}
		info.Deriver = deriver
		infos = append(infos, info)
	}
	fault.Point(fault.BeforeRegister)
	if err := nixstore.Register(ctx, infos); err != nil {
		return fmt.Errorf("delivering outputs of %s: %w", deriver, err)
	}
	return nil
}

// hashAndScan computes the NAR hash and size of p and the candidates it
// refers to, in one pass over the tree.
func hashAndScan(p string, candidates []string) (nixstore.PathInfo, error) {
	scanner, err := newRefScanner(candidates)
	if err != nil {
		return nixstore.PathInfo{}, err
	}
	h := sha256.New()
	cw := ioutils.NewWriteCounter(io.MultiWriter(h, scanner))
	if err := DumpNAR(cw, p); err != nil {
		return nixstore.PathInfo{}, err
	}
	info := nixstore.PathInfo{Path: p, NARSize: uint64(cw.Count), References: scanner.found()}
	copy(info.NARHash[:], h.Sum(nil))
	return info, nil
}

// RemoveTree deletes whatever is at path without following a symlink in
// it (os.RemoveAll works beneath directory descriptors). Other users make
// read-only directories writable first; root needs no permission and
// changes none, since the tree may be one another user can swap parts of.
func RemoveTree(path string) error {
	if _, err := os.Lstat(path); os.IsNotExist(err) {
		return nil
	}
	if os.Geteuid() != 0 {
		_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// CopyTree copies the file, symlink or directory tree at src to dst
// (which must not exist), keeping file types and permission bits; file
// contents are streamed (copy_file_range where possible), never held in
// memory whole.
func CopyTree(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch mode := fi.Mode(); {
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case mode.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := CopyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
		return nil
	case mode.IsRegular():
		return copyFile(src, dst, mode.Perm())
	default:
		return fmt.Errorf("%s is a %v, which a Nix store cannot hold; remove it from the output", src, mode.Type())
	}
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range where possible
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return os.Chmod(dst, perm)
}

// Package storetree is a tree as the Nix store holds it: its NAR
// serialization and hash (go-nix's nar; also read through an os.Root, for a
// tree another user may change), the store paths it refers to, the
// metadata Nix gives store paths; and Deliver, which makes trees built
// outside Nix valid store paths (under Nix's path locks: copied into
// place, canonicalised, scanned, hashed, registered with
// nixstore.Register). The runner delivers with it; phaserun checks
// outputs as Nix would, verify compares trees with Nix's hashes.
package storetree

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"syscall"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"go.podman.io/storage/pkg/ioutils"
)

// NARHash serializes path (a file, directory or symlink on the host; it
// need not be in the store) as a Nix archive and returns the archive's
// SHA-256 and size: the values `nix-store --dump PATH | sha256sum` and
// `nix-hash --type sha256 PATH` give and that Nix registers.
func NARHash(path string) (sum [32]byte, size uint64, err error) {
	h := sha256.New()
	cw := ioutils.NewWriteCounter(h)
	if err := DumpNAR(cw, path); err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, uint64(cw.Count), nil
}

// DumpNAR writes the NAR serialization of path to w, like
// nix-store --dump (go-nix's serializer: entries sorted by name, regular
// files executable when their owner-execute bit is set; devices, sockets
// and fifos are an error).
func DumpNAR(w io.Writer, path string) error {
	if err := nar.DumpPath(w, path); err != nil {
		return fmt.Errorf("NAR serialization of %s: %w", path, err)
	}
	return nil
}

// NARHashIn is NARHash of name inside dir, read through an os.Root (see
// DumpNARIn).
func NARHashIn(dir *os.Root, name string) (sum [32]byte, size uint64, err error) {
	h := sha256.New()
	cw := ioutils.NewWriteCounter(h)
	if err := DumpNARIn(cw, dir, name); err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, uint64(cw.Count), nil
}

// DumpNARIn is DumpNAR of name inside dir, read through an os.Root: for a
// tree another user may change while root reads it, no symlink or rename
// in it leads the reader outside dir, and only regular files are opened.
func DumpNARIn(w io.Writer, dir *os.Root, name string) error {
	nw, err := nar.NewWriter(w)
	if err != nil {
		return err
	}
	defer nw.Close()
	err = WalkIn(dir, name, func(rel string, fi fs.FileInfo) error {
		h := &nar.Header{Path: "/" + rel}
		if rel == "" {
			h.Path = "/"
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			h.Type = nar.TypeSymlink
			if h.LinkTarget, err = dir.Readlink(path.Join(name, rel)); err != nil {
				return err
			}
			return nw.WriteHeader(h)
		case fi.IsDir():
			h.Type = nar.TypeDirectory
			return nw.WriteHeader(h)
		}
		f, fi, err := treefile.Open(dir, path.Join(name, rel))
		if err != nil {
			return err
		}
		defer f.Close()
		h.Type, h.Size, h.Executable = nar.TypeRegular, fi.Size(), fi.Mode()&0o100 != 0
		if err := nw.WriteHeader(h); err != nil {
			return err
		}
		if n, err := io.Copy(nw, f); err != nil || n != fi.Size() {
			return fmt.Errorf("%s changed while it was read", path.Join(name, rel))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("NAR serialization of %s: %w", name, err)
	}
	return nw.Close()
}

// WalkIn calls fn for name inside dir and, when it is a directory,
// everything beneath it, parents first and names sorted, with rel the
// slash-separated path below name ("" for name) and fi from lstat: no
// symlink is followed and none leads outside dir (os.Root). Files other
// than directories, regular files and symlinks are an error.
func WalkIn(dir *os.Root, name string, fn func(rel string, fi fs.FileInfo) error) error {
	var walk func(rel string) error
	walk = func(rel string) error {
		p := path.Join(name, rel)
		fi, err := dir.Lstat(p)
		if err != nil {
			return err
		}
		if t := fi.Mode().Type(); t != 0 && t != fs.ModeDir && t != fs.ModeSymlink {
			return fmt.Errorf("%s is a %v, which a Nix store cannot hold", p, t)
		}
		if err := fn(rel, fi); err != nil || !fi.IsDir() {
			return err
		}
		d, err := dir.OpenFile(p, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			if err := walk(path.Join(rel, n)); err != nil {
				return err
			}
		}
		return nil
	}
	return walk("")
}

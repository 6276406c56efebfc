package storetree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Canonicalise gives the tree at root the metadata Nix gives store paths
// (canonicalisePathMetaData): regular files 0444, or 0555 when the owner
// may execute them; directories 0555; setuid/setgid/sticky bits dropped;
// modification time 1 (1970-01-01T00:00:01Z, access times kept); owner
// root:root when running as root; extended attributes removed. Symlinks
// get lchown and an lutimes. Other file types are an error.
func Canonicalise(root string) error {
	asRoot := os.Geteuid() == 0
	return canonicalise(root, asRoot)
}

func canonicalise(path string, asRoot bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fmt.Errorf("canonicalising %s: %w", path, err)
	}
	ft := st.Mode & unix.S_IFMT
	if ft == unix.S_IFDIR {
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("canonicalising %s: %w", path, err)
		}
		for _, e := range entries {
			if err := canonicalise(filepath.Join(path, e.Name()), asRoot); err != nil {
				return err
			}
		}
	}
	if err := removeXattrs(path); err != nil {
		return err
	}
	if asRoot && (st.Uid != 0 || st.Gid != 0) {
		if err := unix.Lchown(path, 0, 0); err != nil {
			return fmt.Errorf("canonicalising %s: setting owner root:root: %w", path, err)
		}
	}
	switch ft {
	case unix.S_IFLNK:
	case unix.S_IFDIR:
		if st.Mode&0o7777 != 0o555 {
			if err := unix.Chmod(path, 0o555); err != nil {
				return fmt.Errorf("canonicalising %s: %w", path, err)
			}
		}
	case unix.S_IFREG:
		mode := uint32(0o444)
		if st.Mode&unix.S_IXUSR != 0 {
			mode = 0o555
		}
		if st.Mode&0o7777 != mode {
			if err := unix.Chmod(path, mode); err != nil {
				return fmt.Errorf("canonicalising %s: %w", path, err)
			}
		}
	default:
		return fmt.Errorf("canonicalising %s: file type %#o cannot be in the Nix store; remove it from the output", path, ft)
	}
	if st.Mtim.Sec != 1 || st.Mtim.Nsec != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 1}}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("canonicalising %s: setting mtime: %w", path, err)
		}
	}
	return nil
}

// removeXattrs removes extended attributes (and so ACLs), keeping
// security.selinux like Nix does.
func removeXattrs(path string) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(path, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(path, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("canonicalising %s: listing extended attributes: %w", path, err)
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		if err := unix.Lremovexattr(path, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("canonicalising %s: removing extended attribute %s: %w", path, name, err)
		}
	}
	return nil
}

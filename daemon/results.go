package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// resultsRoot prepares the directory that holds each user's results
// directory: root's, 0711, on a path no other user can change (every
// directory above it root's and writable by nobody else, unless sticky
// as /tmp is, where nobody may rename what root made).
func resultsRoot(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := rootOwnedDir(dir); err != nil {
		return err
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || !fi.IsDir() || st.Uid != 0 || (fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0) {
			return fmt.Errorf("%s is on a path another user can change (%s must be a directory of root's that only root may write): choose --results elsewhere", dir, p)
		}
		if p == "/" {
			return nil
		}
	}
}

// rootOwnedDir makes dir a directory of root's, 0711: others may enter it
// but neither list nor change it. The daemon writes a user's results into
// it (the engine copies them in a private staging directory, then hands
// each result's top to its user, 0500), so no user may own it or anything
// on the way to it: a user's directory would let them swap a path root is
// about to write or follow. An earlier daemon's user-owned directory is
// taken back (its parent is root's, so the entry cannot be swapped).
func rootOwnedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || st.Gid != 0) {
		if err := os.Lchown(dir, 0, 0); err != nil {
			return err
		}
	}
	if fi.Mode().Perm() != 0o711 {
		return os.Chmod(dir, 0o711)
	}
	return nil
}

package nixstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LockPaths takes Nix's path locks on paths, in sorted order as Nix
// does: an exclusive flock(2) on "<path>.lock" (created 0600), retried
// when the lock file turns out to have been deleted by its previous
// holder (Nix marks such files by writing a byte before unlinking them).
// It waits until every lock is held or ctx is done. unlock releases the
// locks and deletes the lock files, as Nix does for build outputs; it
// is safe to call more than once.
//
// Note: while Nix hands a build to a build hook it holds these locks
// for the build's outputs itself; a hook must not take them again.
func LockPaths(ctx context.Context, paths []string) (unlock func(), err error) {
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	sorted = slices.Compact(sorted)
	var held []*os.File
	release := func(del bool) {
		for _, f := range held {
			if del {
				_ = os.Remove(f.Name())
				_, _ = f.Write([]byte("d"))
			}
			_ = f.Close() // closing releases the flock
		}
		held = nil
	}
	for _, p := range sorted {
		f, err := lockOne(ctx, p+".lock")
		if err != nil {
			release(false)
			return nil, err
		}
		held = append(held, f)
	}
	var once sync.Once
	return func() { once.Do(func() { release(true) }) }, nil
}

func lockOne(ctx context.Context, lockPath string) (*os.File, error) {
	delay := 5 * time.Millisecond
	for {
		f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening lock file %s: %w", lockPath, err)
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil || !(errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EINTR)) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("waiting for lock %s (held by another Nix process building the same path): %w", lockPath, ctx.Err())
			case <-time.After(delay):
			}
			delay = min(delay*2, 100*time.Millisecond)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", lockPath, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("checking lock file %s: %w", lockPath, err)
		}
		if fi.Size() == 0 {
			return f, nil
		}
		// The previous holder deleted this file; lock the new one.
		f.Close()
	}
}

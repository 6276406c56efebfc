// Package cachelock is the locks of a cache: a flock on a file under
// <cache>/locks named from a digest of the lock's kind and subject (a
// derivation path, a package name: strings a derivation chooses), which
// holds its subject, so that Held can say what is locked. A build waiting
// for a lock takes its foreground mark away meanwhile, since background
// work may hold the lock. The engine serialises builds of a derivation,
// learning and background work of a package, and removals with them.
package cachelock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/internal/fsname"
)

// The kinds of lock, each with the subject it serialises.
const (
	// Derivation: the builds of a derivation (subject: its path).
	Derivation = "drv"
	// Removal is held exclusively while layers are removed (gc, dropped
	// attempts) and shared while a build chooses the chain it reuses and
	// mounts it: a chain is never removed between its choice and its use,
	// and what is removed is never chosen (no subject).
	Removal = "gc"
	// Learn: the learning of a package's path maps (subject: the package).
	Learn = "learn"
	// Background: the background work of a package (subject: the package).
	Background = "background"
	// AuditCount: the count that picks which resumed results are audited.
	AuditCount = "audit-count"
)

// Locks are the locks of one cache.
type Locks struct{ dir string }

// In are the locks of the cache in cacheDir.
func In(cacheDir string) Locks { return Locks{dir: filepath.Join(cacheDir, "locks")} }

// Exclusive takes an exclusive flock on a file under the cache, telling
// the user (waiting) when it has to wait for another holder. The file is named from a
// digest of kind and subject (a derivation path, a package name: strings a
// derivation chooses), which it holds once locked.
func (l Locks) Exclusive(ctx context.Context, kind, subject string, waiting func()) (func(), error) {
	return l.flock(ctx, kind, subject, syscall.LOCK_EX, waiting)
}

// Shared takes the lock beside other shared holders, apart from an
// exclusive one.
func (l Locks) Shared(ctx context.Context, kind, subject string, waiting func()) (func(), error) {
	return l.flock(ctx, kind, subject, syscall.LOCK_SH, waiting)
}

// Try takes the lock only if nobody holds it (ok false otherwise).
func (l Locks) Try(kind, subject string) (unlock func(), ok bool) {
	f, err := l.open(kind, subject)
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	var once sync.Once
	return func() { once.Do(func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }) }, true
}

// open opens the lock file of kind and subject.
func (l Locks) open(kind, subject string) (*os.File, error) {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(l.dir, fsname.For(kind, subject)+".lock"), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	// What it locks, for Held, written before the lock is
	// taken, so that a held lock always names its subject: every process
	// that opens this file writes the same bytes.
	if _, err := f.WriteAt([]byte(subject), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}

func (l Locks) flock(ctx context.Context, kind, subject string, how int, waiting func()) (func(), error) {
	f, err := l.open(kind, subject)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		if waiting != nil {
			waiting()
		}
		fault.PointAt(fault.WaitLock, kind) // tests see the wait begin
		// Background work may hold it: it must not pause for this build.
		fg := foreground.Of(ctx)
		fg.Suspend()
		defer fg.Resume()
		done := make(chan error, 1)
		go func() { done <- syscall.Flock(int(f.Fd()), how) }()
		select {
		case err := <-done:
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("lock: %w", err)
			}
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	return func() { once.Do(func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }) }, nil
}

// Held are the subjects of the locks of kind that someone holds right now
// (shared or exclusive).
func (l Locks) Held(kind string) []string {
	var held []string
	files, _ := filepath.Glob(filepath.Join(l.dir, kind+"-*.lock"))
	for _, f := range files {
		fd, err := os.OpenFile(f, os.O_RDWR|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			// The holder wrote its subject into the lock.
			subject := make([]byte, 4096)
			n, _ := fd.ReadAt(subject, 0)
			held = append(held, string(subject[:n]))
		} else {
			syscall.Flock(int(fd.Fd()), syscall.LOCK_UN)
		}
		fd.Close()
	}
	return held
}

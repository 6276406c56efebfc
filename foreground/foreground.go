// Package foreground keeps background work out of the way of the builds a
// user waits for. Every foreground build of a cache leaves a mark in
// <cache>/locks/foreground while it runs (Put); background work of that
// cache (nixlayer learn: learning, settling, audits) runs in a context from
// Background, which stops the processes of its running steps while any
// mark is there and ends with ErrYielded when a build reruns a phase of
// the chain it learns. The engine puts the marks and runs the background
// work; its steps register their sandbox processes (Running).
package foreground

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/internal/proc"
)

// Why: idle priority alone does not keep background work out of a build's way:
// on a 2-core virtual machine a nix-build beside an idle-class learner
// took twice its time (the host shares the cores, caches and memory
// bandwidth whatever the guest's classes). So every foreground build of a
// cache leaves a mark in <cache>/locks/foreground while it runs; the
// background work of that cache (nixlayer learn: learning, settling,
// audits) stops the processes of its running step while any mark is
// there (SIGSTOP, SIGCONT after), and gives up a chain the build reruns
// (ErrYielded). A mark outlives no build: it names the build's process,
// and a mark whose process is gone is removed.

// Build is what a running build tells background work: its mark.
type Build struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // the process's start time (/proc/PID/stat), against PID reuse
	Pkg   string `json:"pkg"`
	// Keys are those of the phases the build runs.
	Keys []string `json:"keys,omitempty"`
}

func dir(cacheDir string) string {
	return filepath.Join(cacheDir, "locks", "foreground")
}

// Mark is a build's mark. A build that waits for a lock background work
// may hold takes its mark away meanwhile (Suspend), so that work is not
// paused by the build that waits for it.
type Mark struct {
	mu    sync.Mutex
	path  string
	data  []byte
	depth int  // suspends not yet resumed
	ended bool // done: never written again
}

type foregroundKey struct{}

// With is ctx of a build that holds mark m.
func With(ctx context.Context, m *Mark) context.Context {
	return context.WithValue(ctx, foregroundKey{}, m)
}

// Of is the mark of the build ctx is for (nil: none, which does nothing).
func Of(ctx context.Context) *Mark {
	m, _ := ctx.Value(foregroundKey{}).(*Mark)
	return m
}

// Put announces a build of pkg that runs the phases of keys to the
// background work of the cache, until Done. nil (a mark that does
// nothing) when it cannot be written.
func Put(cacheDir, pkg string, keys []string, log *zap.Logger) *Mark {
	m := Build{PID: os.Getpid(), Start: proc.StartTime(os.Getpid()), Pkg: pkg, Keys: keys}
	data, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	dir := dir(cacheDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Debug("no foreground mark: background work is not paused for this build")
		return nil
	}
	f, err := os.CreateTemp(dir, strconv.Itoa(m.PID)+"-*.json")
	if err != nil {
		log.Debug("no foreground mark: background work is not paused for this build")
		return nil
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr != nil || cerr != nil {
		os.Remove(f.Name())
		return nil
	}
	return &Mark{path: f.Name(), data: data}
}

// Done removes the mark: the build ended.
func (m *Mark) Done() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ended = true
	os.Remove(m.path)
}

// Suspend takes the mark away until Resume.
func (m *Mark) Suspend() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.depth++; m.depth == 1 && !m.ended {
		os.Remove(m.path)
	}
}

// Resume puts the mark back when every Suspend is resumed.
func (m *Mark) Resume() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.depth--; m.depth == 0 && !m.ended {
		os.WriteFile(m.path, m.data, 0o600)
	}
}

// builds are the builds of other processes running on the cache; marks of
// processes that are gone are removed.
func builds(cacheDir string) []Build {
	entries, err := os.ReadDir(dir(cacheDir))
	if err != nil {
		return nil
	}
	var marks []Build
	for _, ent := range entries {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir(cacheDir), ent.Name())
		data, err := os.ReadFile(p)
		var m Build
		if err != nil || len(data) > 1<<20 || json.Unmarshal(data, &m) != nil {
			continue // being written, or not a mark
		}
		if m.PID == os.Getpid() {
			continue
		}
		if !proc.Alive(m.PID) || proc.StartTime(m.PID) != m.Start {
			os.Remove(p)
			continue
		}
		marks = append(marks, m)
	}
	return marks
}

// Work is the state of background work that pauses for foreground builds:
// the steps it runs and whether they are stopped.
type Work struct {
	mu      sync.Mutex
	steps   map[int]bool // sandbox processes running a step
	paused  bool
	resumed chan struct{} // closed when not paused
}

type backgroundKey struct{}

// maxPause is the longest background work stays paused in a row; it then
// runs for a fifth of that, so that one user's builds, one after another,
// do not keep the settling of everyone's results back for ever.
const maxPause = 5 * time.Minute

// WorkOf is the background work ctx is for (nil in a foreground build).
func WorkOf(ctx context.Context) *Work {
	bg, _ := ctx.Value(backgroundKey{}).(*Work)
	return bg
}

// ErrYielded ends background work on a chain a foreground build builds.
var ErrYielded = errors.New("a foreground build builds this chain: learning left to it")

// Yielded reports whether ctx ended because a foreground build reruns the
// chain its background work learns.
func Yielded(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrYielded) }

// Background marks ctx as background work on cacheDir: its steps pause
// while foreground builds run on the cache, and a poll stops it with
// ErrYielded when one of them runs a phase whose key is in learning (the
// learner's chain). It returns the context and its stop.
func Background(ctx context.Context, cacheDir string, learning func() []string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	bg := &Work{steps: map[int]bool{}, resumed: make(chan struct{})}
	close(bg.resumed)
	ctx = context.WithValue(ctx, backgroundKey{}, bg)
	var pausedAt, freeUntil time.Time
	check := func() bool {
		marks := builds(cacheDir)
		keys := learning()
		for _, m := range marks {
			for _, k := range m.Keys {
				if slices.Contains(keys, k) {
					bg.setPaused(false)
					cancel(ErrYielded)
					return true
				}
			}
		}
		// Never starved: after maxPause in a row it runs (at idle
		// priority) for a while, whatever builds.
		now := time.Now()
		pause := len(marks) > 0 && now.After(freeUntil)
		switch {
		case !pause:
			pausedAt = time.Time{}
		case pausedAt.IsZero():
			pausedAt = now
		case now.Sub(pausedAt) > maxPause:
			pause, pausedAt, freeUntil = false, time.Time{}, now.Add(maxPause/5)
		}
		bg.setPaused(pause)
		return false
	}
	go func() {
		if !check() {
			poll.Every(ctx, 200*time.Millisecond, check)
		}
	}()
	return ctx, func() { bg.setPaused(false); cancel(nil) }
}

// setPaused stops or continues the running steps' processes.
func (bg *Work) setPaused(p bool) {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	if p == bg.paused {
		return
	}
	bg.paused = p
	if p {
		bg.resumed = make(chan struct{})
	} else {
		close(bg.resumed)
	}
	for pid := range bg.steps {
		proc.SignalTree(pid, p)
	}
}

// Running registers a step's sandbox process (stopped at once if paused);
// the returned func unregisters it.
func (bg *Work) Running(pid int) func() {
	bg.mu.Lock()
	defer bg.mu.Unlock()
	bg.steps[pid] = true
	if bg.paused {
		proc.SignalTree(pid, true)
	}
	return func() {
		bg.mu.Lock()
		defer bg.mu.Unlock()
		delete(bg.steps, pid)
	}
}

// WaitResumed blocks while foreground builds run (for work of this process
// between steps), until ctx ends.
func (bg *Work) WaitResumed(ctx context.Context) error {
	if bg == nil {
		return nil
	}
	bg.mu.Lock()
	ch := bg.resumed
	bg.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/internal/proc"
)

// Idle priority alone does not keep background work out of a build's way:
// on a 2-core virtual machine a nix-build beside an idle-class learner
// took twice its time (the host shares the cores, caches and memory
// bandwidth whatever the guest's classes). So every foreground build of a
// cache leaves a mark in <cache>/locks/foreground while it runs; the
// background work of that cache (nixlayer learn: learning, settling,
// audits) stops the processes of its running step while any mark is
// there (SIGSTOP, SIGCONT after), and gives up a chain the build reruns
// (errYielded). A mark outlives no build: it names the build's process,
// and a mark whose process is gone is removed.

// foregroundMark is what a running build tells background work.
type foregroundMark struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // the process's start time (/proc/PID/stat), against PID reuse
	Pkg   string `json:"pkg"`
	// Keys are those of the phases the build runs.
	Keys []string `json:"keys,omitempty"`
}

func (e *Engine) foregroundDir() string {
	return filepath.Join(e.opts.CacheDir, "locks", "foreground")
}

// fgMark is a build's mark. A build that waits for a lock background
// work may hold takes its mark away meanwhile (suspend), so that work is
// not paused by the build that waits for it.
type fgMark struct {
	mu    sync.Mutex
	path  string
	data  []byte
	depth int  // suspends not yet resumed
	ended bool // done: never written again
}

type foregroundKey struct{}

// withForeground is ctx of a build that holds mark m.
func withForeground(ctx context.Context, m *fgMark) context.Context {
	return context.WithValue(ctx, foregroundKey{}, m)
}

func foregroundOf(ctx context.Context) *fgMark {
	m, _ := ctx.Value(foregroundKey{}).(*fgMark)
	return m
}

// markForeground announces a build of pkg that runs plan's phases to the
// background work of the cache, until done. nil (a mark that does
// nothing) when it cannot be written.
func (e *Engine) markForeground(pkg string, plan *Plan) *fgMark {
	m := foregroundMark{PID: os.Getpid(), Start: proc.StartTime(os.Getpid()), Pkg: pkg}
	for _, ph := range plan.Phases {
		if plan.runs(ph) && ph.Key != "" {
			m.Keys = append(m.Keys, ph.Key)
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	dir := e.foregroundDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.log.Debug("no foreground mark: background work is not paused for this build")
		return nil
	}
	f, err := os.CreateTemp(dir, strconv.Itoa(m.PID)+"-*.json")
	if err != nil {
		e.log.Debug("no foreground mark: background work is not paused for this build")
		return nil
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr != nil || cerr != nil {
		os.Remove(f.Name())
		return nil
	}
	return &fgMark{path: f.Name(), data: data}
}

// done removes the mark: the build ended.
func (m *fgMark) done() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ended = true
	os.Remove(m.path)
}

// suspend takes the mark away until resume.
func (m *fgMark) suspend() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.depth++; m.depth == 1 && !m.ended {
		os.Remove(m.path)
	}
}

func (m *fgMark) resume() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.depth--; m.depth == 0 && !m.ended {
		os.WriteFile(m.path, m.data, 0o600)
	}
}

// foregroundBuilds are the builds of other processes running on the
// cache; marks of processes that are gone are removed.
func (e *Engine) foregroundBuilds() []foregroundMark {
	entries, err := os.ReadDir(e.foregroundDir())
	if err != nil {
		return nil
	}
	var marks []foregroundMark
	for _, ent := range entries {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		p := filepath.Join(e.foregroundDir(), ent.Name())
		data, err := os.ReadFile(p)
		var m foregroundMark
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

// background is the state of background work that pauses for foreground
// builds: the steps it runs and whether they are stopped.
type background struct {
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

// backgroundOf is the background state ctx carries (nil in a foreground
// build).
func backgroundOf(ctx context.Context) *background {
	bg, _ := ctx.Value(backgroundKey{}).(*background)
	return bg
}

// inBackground marks ctx as background work: its steps pause while
// foreground builds run on the cache, and poll, every interval, stops it
// with errYielded when one of them runs a phase whose key is in learning
// (the learner's chain). It returns the context and its stop.
func (e *Engine) inBackground(ctx context.Context, learning func() []string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	bg := &background{steps: map[int]bool{}, resumed: make(chan struct{})}
	close(bg.resumed)
	ctx = context.WithValue(ctx, backgroundKey{}, bg)
	var pausedAt, freeUntil time.Time
	check := func() bool {
		marks := e.foregroundBuilds()
		keys := learning()
		for _, m := range marks {
			for _, k := range m.Keys {
				if slices.Contains(keys, k) {
					bg.setPaused(false)
					cancel(errYielded)
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
func (bg *background) setPaused(p bool) {
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

// running registers a step's sandbox process (stopped at once if paused);
// the returned func unregisters it.
func (bg *background) running(pid int) func() {
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

// waitResumed blocks while foreground builds run (for work of this
// process between steps), until ctx ends.
func (bg *background) waitResumed(ctx context.Context) error {
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

package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/fsname"
	"github.com/nixlayer/nixlayer/internal/proc"
)

// Work is a process at work on a package in a cache: background work
// (`nixlayer learn`: settling, learning, auditing), or a build learning a
// path map in front. One record per package and process, under
// <cache>/locks; a record whose process is gone is ignored.
type Work struct {
	Package string    `json:"package"`
	Drv     string    `json:"drv"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Background: the process is background work (status lists it), not
	// a foreground build.
	Background bool `json:"background,omitempty"`
	// Why says what background work does and why it runs (at idle
	// priority).
	Why string `json:"why,omitempty"`
	// Learning is the chain the process learns right now, if it does.
	Learning *Learning `json:"learning,omitempty"`
}

// Job is background work as status shows it.
type Job struct {
	Package string    `json:"package"`
	Drv     string    `json:"drv"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Why says what the work does and why it runs (at idle priority).
	Why string `json:"why,omitempty"`
	// Doing is the chain its learner is at work on, when it is.
	Doing string `json:"doing,omitempty"`
}

// Learning is the chain a process learns the path map of: what the hook
// deciding whether to wait for it, and a build about to rebuild its chain,
// need to know.
type Learning struct {
	Started time.Time `json:"started"`
	// Estimate is scaled from the last learning measured (0: none was).
	Estimate time.Duration `json:"estimate"`
	Layers   []string      `json:"layers"`
	Keys     []string      `json:"keys"`
}

func workFile(cacheDir, pkg string, pid int) string {
	return filepath.Join(cacheDir, "locks", fmt.Sprintf("%s-%d.json", fsname.For("work", pkg), pid))
}

// update changes the record of pkg and pid (a new one when it has none)
// and writes it, or removes it when change leaves it with nothing to say.
func update(cacheDir, pkg string, pid int, change func(*Work)) {
	p := workFile(cacheDir, pkg, pid)
	w := Work{Package: pkg, PID: pid, Started: time.Now()}
	if old, err := os.ReadFile(p); err == nil {
		_ = json.Unmarshal(old, &w)
	}
	change(&w)
	if !w.Background && w.Learning == nil {
		os.Remove(p)
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	data, _ := json.Marshal(w)
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if os.WriteFile(tmp, data, 0o600) == nil {
		_ = os.Rename(tmp, p)
	}
}

// AnnounceBackground records process pid as background work on pkg (the
// process that starts it does so, so that the work shows from its start;
// the process itself again, with why "", which keeps the starter's why).
// The returned function ends the record.
func AnnounceBackground(cacheDir, pkg, drvPath string, pid int, why string) (done func()) {
	update(cacheDir, pkg, pid, func(w *Work) {
		w.Drv, w.Background, w.Started = drvPath, true, time.Now()
		if why != "" {
			w.Why = why
		}
	})
	return func() { update(cacheDir, pkg, pid, func(w *Work) { w.Background = false; w.Learning = nil }) }
}

// AnnounceLearning records the chain this process learns for pkg; the
// returned function takes it back (the process's background record, if
// any, stays).
func AnnounceLearning(cacheDir, pkg string, l Learning) (done func()) {
	pid := os.Getpid()
	update(cacheDir, pkg, pid, func(w *Work) { w.Learning = &l })
	return func() { update(cacheDir, pkg, pid, func(w *Work) { w.Learning = nil }) }
}

// working are the records of the live processes at work on a cache (on
// pkg only, when pkg is not "").
func working(cacheDir, pkg string) []Work {
	pattern := "work-*.json"
	if pkg != "" {
		pattern = fsname.For("work", pkg) + "-*.json"
	}
	files, _ := filepath.Glob(filepath.Join(cacheDir, "locks", pattern))
	var out []Work
	for _, f := range files {
		pid, err := strconv.Atoi(strings.TrimSuffix(f[strings.LastIndexByte(f, '-')+1:], ".json"))
		if err != nil || !proc.Alive(pid) {
			continue
		}
		data, err := os.ReadFile(f)
		var w Work
		if err == nil && json.Unmarshal(data, &w) == nil && w.PID == pid {
			out = append(out, w)
		}
	}
	return out
}

// Background lists the background work running on a cache, each saying
// what it learns (Doing).
func Background(cacheDir string) []Job {
	var out []Job
	for _, w := range working(cacheDir, "") {
		if !w.Background {
			continue
		}
		j := Job{Package: w.Package, Drv: w.Drv, PID: w.PID, Started: w.Started, Why: w.Why}
		if l := w.Learning; l != nil {
			j.Doing = fmt.Sprintf("learning the path map of %d phases (a twin build with a synthetic output path) for %s", len(l.Layers), events.Duration(time.Since(l.Started)))
			if l.Estimate > 0 {
				j.Doing += fmt.Sprintf(", about %s by the last learning measured", events.Duration(l.Estimate))
			}
		}
		out = append(out, j)
	}
	return out
}

// Learner is the process learning a chain of pkg right now (nil: none),
// the one that started last when several do.
func Learner(cacheDir, pkg string) *Work {
	var found *Work
	for _, w := range working(cacheDir, pkg) {
		if w.Learning != nil && (found == nil || w.Learning.Started.After(found.Learning.Started)) {
			found = &w
		}
	}
	return found
}

// MyLearning is the chain this process learns for pkg (nil: none): one
// read of its own record, for a learner's poll.
func MyLearning(cacheDir, pkg string) *Learning {
	data, err := os.ReadFile(workFile(cacheDir, pkg, os.Getpid()))
	var w Work
	if err != nil || json.Unmarshal(data, &w) != nil {
		return nil
	}
	return w.Learning
}

// Covers reports whether l learns layer id.
func (l *Learning) Covers(id string) bool { return slices.Contains(l.Layers, id) }

// HasKey reports whether l learns a layer with key.
func (l *Learning) HasKey(key string) bool { return slices.Contains(l.Keys, key) }

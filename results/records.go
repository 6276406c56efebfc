// Package results keeps what a cache knows about the results it built and
// the work still running on them: one record per derivation (its state,
// why, where its outputs are, what background work must settle, the
// audit), under <cache>/status, and the registry of the processes at work
// on a package (background learners, settlers, a build learning a map in
// front), under <cache>/locks. The engine writes both; the faces read them
// without opening the layer store (status, the editor's polling, the
// daemon's results).
package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/fsname"
)

// Cause is why a result is provisional: what the background work must
// settle.
type Cause string

const (
	// CauseNoMap: the reused layers were rewritten provisionally because
	// their path map was not learned yet; the learned map confirms the
	// rewrite (no rebuild) or the later phases rerun on the exact one.
	CauseNoMap Cause = "no-map"
	// CauseInexact: the outputs were judged inexact (bytes the map cannot
	// explain reach them): an exact rebuild from the offending phase.
	CauseInexact Cause = "inexact"
	// CauseUnverifiedLayers: the build reused layers that rest on an
	// inexact rewrite of an earlier build: an exact rebuild repairs them.
	CauseUnverifiedLayers Cause = "unverified-layers"
)

// Owner is a user and group on this machine.
type Owner struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// Record is the state of the newest result of one derivation.
type Record struct {
	Drv     string             `json:"drv"`
	Name    string             `json:"name"`
	Package string             `json:"package"`
	State   events.ResultState `json:"state"`
	// Why says, in one line, why the result is in its state: what is
	// provisional about it, how it was verified, why it was replaced.
	Why string `json:"why"`
	// Outputs are where the result is now (output name → path).
	Outputs map[string]string `json:"outputs"`
	// Links are the result links the build made (output name → absolute
	// path); verification repoints those still pointing at the result.
	Links map[string]string `json:"links,omitempty"`
	// ResultsDir held the result while it stayed outside the store, for
	// Owner (the daemon's caller; nil: this engine's user).
	ResultsDir string    `json:"resultsDir,omitempty"`
	Owner      *Owner    `json:"owner,omitempty"`
	Built      time.Time `json:"built"`
	Updated    time.Time `json:"updated"`
	// Cause is what the background work must settle.
	Cause Cause `json:"cause,omitempty"`
	// Settling: the provisional rewrite (CauseNoMap).
	Top          string            `json:"top,omitempty"`          // the result's top layer
	ReusedTop    string            `json:"reusedTop,omitempty"`    // the reused layer the rewrite sits on
	Reused       int               `json:"reused,omitempty"`       // how many phases were reused
	RewriteLayer string            `json:"rewriteLayer,omitempty"` // the provisional rewrite
	Created      []string          `json:"created,omitempty"`      // the layers the build made over it
	Old2New      map[string]string `json:"old2new,omitempty"`
	// Audit: a resumed result chosen for an audit (config.json audit),
	// and what the audit found.
	Audit *Audit `json:"audit,omitempty"`
}

// File is where a cache keeps the record of drvPath (named from a digest
// of the path; the path itself is inside).
func File(cacheDir, drvPath string) string {
	return filepath.Join(cacheDir, "status", fsname.For("drv", drvPath)+".json")
}

// maxRecords bounds the status directory: the oldest settled records go.
const maxRecords = 200

// Save writes a record atomically (Updated is now) and keeps the status
// directory within maxRecords.
func Save(cacheDir string, r *Record) error {
	r.Updated = time.Now()
	p := File(cacheDir, r.Drv)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("result status: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("result status: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("result status: %w", err)
	}
	prune(cacheDir)
	return nil
}

// Event is the event that announces the record's state.
func (r *Record) Event() events.Event {
	return events.Event{Kind: r.State.Kind(), State: r.State, Drv: r.Drv, Message: r.Name + ": " + string(r.State) + ": " + r.Why}
}

// StateLine is a record in one line, as status and the editor show it.
func (r *Record) StateLine() string {
	var outs []string
	for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
		outs = append(outs, r.Outputs[name])
	}
	return fmt.Sprintf("%-11s %s: %s (%s)", r.State, r.Name, r.Why, strings.Join(outs, " "))
}

// Of is the state of the newest result of a derivation in a cache (nil,
// nil when nixlayer never built it there).
func Of(cacheDir, drvPath string) (*Record, error) {
	return read(File(cacheDir, drvPath))
}

func read(p string) (*Record, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("result status: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("result status %s: %w", p, err)
	}
	return &r, nil
}

// List lists the results recorded in a cache, newest first. Unreadable
// records are skipped.
func List(cacheDir string) ([]*Record, error) {
	files, err := filepath.Glob(filepath.Join(cacheDir, "status", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, f := range files {
		r, err := read(f)
		if err != nil || r == nil {
			continue
		}
		// An earlier nixlayer named records after the .drv's file name:
		// such a record takes its digest name once (or goes, when a newer
		// one has it).
		if want := File(cacheDir, r.Drv); f != want {
			if _, err := os.Lstat(want); err == nil {
				os.Remove(f)
				continue
			}
			_ = os.Rename(f, want)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Built.After(out[j].Built) })
	return out, nil
}

// Pending are the results of a package that background work must still
// settle, oldest first.
func Pending(cacheDir, pkg string) []*Record {
	all, _ := List(cacheDir)
	var out []*Record
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].State.Pending() && all[i].Package == pkg {
			out = append(out, all[i])
		}
	}
	return out
}

// prune keeps the newest maxRecords records; pending ones stay.
func prune(cacheDir string) {
	files, _ := filepath.Glob(filepath.Join(cacheDir, "status", "*.json"))
	if len(files) <= maxRecords {
		return
	}
	all, _ := List(cacheDir)
	for _, r := range all[min(maxRecords, len(all)):] {
		if !r.State.Pending() {
			os.Remove(File(cacheDir, r.Drv))
		}
	}
}

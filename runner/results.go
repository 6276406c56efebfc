package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/fsname"
	"github.com/nixlayer/nixlayer/internal/proc"
	"github.com/nixlayer/nixlayer/verdict"
)

// ResultCause is why a result is provisional: what the background work
// must settle.
type ResultCause string

const (
	// CauseNoMap: the reused layers were rewritten provisionally because
	// their path map was not learned yet; the learned map confirms the
	// rewrite (no rebuild) or the later phases rerun on the exact one.
	CauseNoMap ResultCause = "no-map"
	// CauseInexact: the outputs were judged inexact (bytes the map cannot
	// explain reach them): an exact rebuild from the offending phase.
	CauseInexact ResultCause = "inexact"
	// CauseUnverifiedLayers: the build reused layers that rest on an
	// inexact rewrite of an earlier build: an exact rebuild repairs them.
	CauseUnverifiedLayers ResultCause = "unverified-layers"
)

// provisionalCause is the cause of a provisional result that rests on rs
// (nil: no provisional rewrite) and whose outputs were judged ex (nil: not
// judged).
func provisionalCause(rs *resume, ex *verdict.Exactness) ResultCause {
	switch {
	case rs != nil:
		return CauseNoMap
	case ex != nil && !ex.Exact:
		return CauseInexact
	}
	return CauseUnverifiedLayers
}

// ResultRecord is the state of the newest result of one derivation.
type ResultRecord struct {
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
	Cause ResultCause `json:"cause,omitempty"`
	// Settling: the provisional rewrite (CauseNoMap).
	Top          string            `json:"top,omitempty"`          // the result's top layer
	ReusedTop    string            `json:"reusedTop,omitempty"`    // the reused layer the rewrite sits on
	Reused       int               `json:"reused,omitempty"`       // how many phases were reused
	RewriteLayer string            `json:"rewriteLayer,omitempty"` // the provisional rewrite
	Created      []string          `json:"created,omitempty"`      // the layers the build made over it
	Old2New      map[string]string `json:"old2new,omitempty"`
	// Audit: a resumed result chosen for an audit (config.json audit),
	// and what the audit found (audit.go).
	Audit *Audit `json:"audit,omitempty"`
}

// statusDir holds one record per derivation.
func (e *Engine) statusDir() string { return filepath.Join(e.opts.CacheDir, "status") }

func (e *Engine) recordPath(drvPath string) string {
	return recordFile(e.opts.CacheDir, drvPath)
}

// recordFile is where a cache keeps the record of drvPath (named from a
// digest of the path; the path itself is inside).
func recordFile(cacheDir, drvPath string) string {
	return filepath.Join(cacheDir, "status", fsname.For(lockDrv, drvPath)+".json")
}

// maxRecords bounds the status directory: the oldest settled records go.
const maxRecords = 200

// saveRecord writes a record atomically.
func (e *Engine) saveRecord(r *ResultRecord) error {
	r.Updated = time.Now()
	if err := os.MkdirAll(e.statusDir(), 0o700); err != nil {
		return fmt.Errorf("result status: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := e.recordPath(r.Drv)
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("result status: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("result status: %w", err)
	}
	e.pruneRecords()
	return nil
}

// setState moves a record to a new state and saves it, telling progress.
func (e *Engine) setState(r *ResultRecord, s events.ResultState, why string, progress func(events.Event)) {
	r.State, r.Why = s, why
	if err := e.saveRecord(r); err != nil {
		e.log.Warn("saving a result's state", zap.Error(err))
	}
	progress(StateEvent(r))
}

// StateEvent is the event that announces a record's state.
func StateEvent(r *ResultRecord) events.Event {
	return events.Event{Kind: stateEvents[r.State], State: r.State, Drv: r.Drv, Message: r.Name + ": " + string(r.State) + ": " + r.Why}
}

// stateEvents are the events that announce each state.
var stateEvents = map[events.ResultState]events.EventKind{
	events.StateProvisional: events.EventProvisional,
	events.StateVerifying:   events.EventVerifying,
	events.StateVerified:    events.EventVerified,
	events.StateReplaced:    events.EventReplaced,
	events.StateUnverified:  events.EventUnverified,
}

// Record is the state of the newest result of a derivation (nil, nil when
// nixlayer never built it).
func (e *Engine) Record(drvPath string) (*ResultRecord, error) {
	return readRecord(e.recordPath(drvPath))
}

func readRecord(p string) (*ResultRecord, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("result status: %w", err)
	}
	var r ResultRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("result status %s: %w", p, err)
	}
	return &r, nil
}

// Results lists the recorded results, newest first.
func (e *Engine) Results() ([]*ResultRecord, error) { return Results(e.opts.CacheDir) }

// Results lists the results recorded in a cache, newest first, without
// opening its layer store (status, the editor's polling). Unreadable
// records are skipped.
func Results(cacheDir string) ([]*ResultRecord, error) {
	files, err := filepath.Glob(filepath.Join(cacheDir, "status", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*ResultRecord
	for _, f := range files {
		r, err := readRecord(f)
		if err != nil || r == nil {
			continue
		}
		// An earlier nixlayer named records after the .drv's file name:
		// such a record takes its digest name once (or goes, when a newer
		// one has it).
		if want := recordFile(cacheDir, r.Drv); f != want {
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

// RecordOf is the state of the newest result of a derivation in a cache
// (nil, nil when nixlayer never built it there).
func RecordOf(cacheDir, drvPath string) (*ResultRecord, error) {
	return readRecord(recordFile(cacheDir, drvPath))
}

// pendingRecords are the results of a package that background work must
// still settle, oldest first.
func (e *Engine) pendingRecords(pkg string) []*ResultRecord {
	all, _ := e.Results()
	var out []*ResultRecord
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].State.Pending() && all[i].Package == pkg {
			out = append(out, all[i])
		}
	}
	return out
}

// pruneRecords keeps the newest maxRecords records; pending ones stay.
func (e *Engine) pruneRecords() {
	files, _ := filepath.Glob(filepath.Join(e.statusDir(), "*.json"))
	if len(files) <= maxRecords {
		return
	}
	all, _ := e.Results()
	for _, r := range all[min(maxRecords, len(all)):] {
		if !r.State.Pending() {
			os.Remove(e.recordPath(r.Drv))
		}
	}
}

// resultLinks are the absolute result links a build makes.
func resultLinks(base string, outputs map[string]string) map[string]string {
	if base == "" {
		return nil
	}
	links := map[string]string{}
	for name := range outputs {
		l := linkName(base, name)
		if abs, err := filepath.Abs(l); err == nil {
			l = abs
		}
		links[name] = l
	}
	return links
}

// StateLine is a record in one line, as status and the editor show it.
func (r *ResultRecord) StateLine() string {
	var outs []string
	for _, name := range sortedKeys(r.Outputs) {
		outs = append(outs, r.Outputs[name])
	}
	return fmt.Sprintf("%-11s %s: %s (%s)", r.State, r.Name, r.Why, strings.Join(outs, " "))
}

// BackgroundJob is background work running on a cache (`nixlayer learn`).
type BackgroundJob struct {
	Package string    `json:"package"`
	Drv     string    `json:"drv"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Why says what the work does and why it runs (at idle priority).
	Why string `json:"why,omitempty"`
	// Doing is the chain its learner is at work on, when it is.
	Doing string `json:"doing,omitempty"`
}

// announceBackground records this process as the package's background
// job; the returned function removes the record.
func (e *Engine) announceBackground(pkg, drvPath string) func() {
	p := e.announceBackgroundOf(pkg, drvPath, os.Getpid(), "")
	return func() { os.Remove(p) }
}

// announceBackgroundOf records process pid as background work on pkg (the
// process that starts it does so, so that the work shows from its start);
// the record is ignored once the process is gone.
func (e *Engine) announceBackgroundOf(pkg, drvPath string, pid int, why string) string {
	p := filepath.Join(e.opts.CacheDir, "locks", fmt.Sprintf("%s-%d.json", fsname.For("background", pkg), pid))
	os.MkdirAll(filepath.Dir(p), 0o700)
	if old, err := os.ReadFile(p); err == nil && why == "" {
		var j BackgroundJob
		if json.Unmarshal(old, &j) == nil {
			why = j.Why // the process that started it said why
		}
	}
	data, _ := json.Marshal(BackgroundJob{Package: pkg, Drv: drvPath, PID: pid, Started: time.Now(), Why: why})
	_ = os.WriteFile(p, data, 0o600)
	return p
}

// BackgroundJobs lists the background work running on a cache.
func BackgroundJobs(cacheDir string) []BackgroundJob {
	files, _ := filepath.Glob(filepath.Join(cacheDir, "locks", "background-*.json"))
	var out []BackgroundJob
	for _, f := range files {
		data, err := os.ReadFile(f)
		var j BackgroundJob
		if err == nil && json.Unmarshal(data, &j) == nil && proc.Alive(j.PID) {
			j.Doing = learnerDoing(cacheDir, j)
			out = append(out, j)
		}
	}
	return out
}

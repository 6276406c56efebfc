// Package buildindex is the index of builds nixlayer sees through Nix: the
// ones Nix runs itself (recorded by pre-/post-build-hook) and the ones the
// build hook makes layered, so `plan`, `ls` and the editor can report them;
// and the phase history of every layered build (phases.go), which the
// editor's hover and its failure diagnostics read.
//
// It is an append-only JSON lines file under the cache directory: one
// O_APPEND write per record, no Nix calls, so the hooks add about a
// millisecond to Nix's build loop. The package sits below hook, lsp and
// cmd and imports only drv.
package buildindex

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/fsname"
	"github.com/nixlayer/nixlayer/nixstore"
)

// Who built: Nix's own builder, or nixlayer's build hook.
const (
	ByNix      = "nix"
	ByNixlayer = "nixlayer"
)

// Events of a record.
const (
	EventStart  = "start"
	EventEnd    = "end"
	EventFailed = "failed"
)

// Record is one line of the index.
type Record struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"` // start, end, failed
	// By is who built: "nix" (Nix's own builder) or "nixlayer" (the hook).
	By       string            `json:"by"`
	Drv      string            `json:"drv"`
	Name     string            `json:"name,omitempty"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	Duration time.Duration     `json:"duration,omitempty"`
	Message  string            `json:"message,omitempty"`
}

// Dir is the index's directory inside a cache directory.
const Dir = "index"

const (
	indexFile    = "builds.jsonl"
	startsDir    = "started"
	hookBuiltDir = "hook-built"
)

// Path is the index file of a cache directory.
func Path(cacheDir string) string { return filepath.Join(cacheDir, Dir, indexFile) }

// Append adds one record to the index.
func Append(cacheDir string, r Record) error { return appendLine(cacheDir, indexFile, r, 0) }

// appendLine adds v as a JSON line to file of the index directory, under an
// exclusive lock; past limit bytes (0: no limit) the file keeps its newer half.
func appendLine(cacheDir, file string, v any, limit int64) error {
	dir := filepath.Join(cacheDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating build index directory: %w", err)
	}
	line, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", file, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", file, err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if fi, err := f.Stat(); err == nil && limit > 0 && fi.Size() > limit {
		return trimHalf(f)
	}
	return nil
}

// MarkHookBuilt notes that nixlayer's build hook built drvPath (and
// recorded it), so the post-build-hook Nix runs afterwards does not record
// it a second time.
func MarkHookBuilt(cacheDir, drvPath string) error {
	dir := filepath.Join(cacheDir, Dir, hookBuiltDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, fsname.For("drv", drvPath)), nil, 0o600)
}

// TakeHookBuilt reports whether MarkHookBuilt marked drvPath, and removes
// the mark.
func TakeHookBuilt(cacheDir, drvPath string) bool {
	return os.Remove(filepath.Join(cacheDir, Dir, hookBuiltDir, fsname.For("drv", drvPath))) == nil
}

// RecordStart notes that a build of drvPath began (pre-build-hook).
func RecordStart(cacheDir, drvPath, by string) error {
	now := time.Now()
	dir := filepath.Join(cacheDir, Dir, startsDir)
	if err := os.MkdirAll(dir, 0o700); err == nil {
		os.WriteFile(filepath.Join(dir, fsname.For("drv", drvPath)), []byte(strconv.FormatInt(now.UnixNano(), 10)), 0o600)
	}
	return Append(cacheDir, Record{Time: now, Event: EventStart, By: by, Drv: drvPath, Name: DrvName(drvPath)})
}

// RecordEnd notes that a build of drvPath ended (post-build-hook runs only
// after success; the hook records failures too). outPaths may be empty:
// Nix 2.8 sometimes passes no OUT_PATHS, so the outputs are then read from
// the .drv file.
func RecordEnd(cacheDir, drvPath, by, event string, outPaths []string, msg string) error {
	now := time.Now()
	r := Record{Time: now, Event: event, By: by, Drv: drvPath, Name: DrvName(drvPath), Message: msg}
	r.Outputs = map[string]string{}
	d, derr := drv.Read(drvPath)
	for _, p := range outPaths {
		r.Outputs[outputName(d, p)] = p
	}
	if len(outPaths) == 0 && derr == nil {
		r.Outputs = d.Outputs
	}
	start := filepath.Join(cacheDir, Dir, startsDir, fsname.For("drv", drvPath))
	if data, err := os.ReadFile(start); err == nil {
		if ns, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			r.Duration = now.Sub(time.Unix(0, ns))
		}
		os.Remove(start)
	}
	return Append(cacheDir, r)
}

func outputName(d *drv.Derivation, p string) string {
	if d != nil {
		for name, q := range d.Outputs {
			if q == p {
				return name
			}
		}
	}
	return filepath.Base(p)
}

// DrvName is the name part of a .drv path (hash and .drv removed).
func DrvName(drvPath string) string {
	if _, name, ok := nixstore.SplitStorePath(drvPath); ok {
		return strings.TrimSuffix(name, ".drv")
	}
	return strings.TrimSuffix(filepath.Base(drvPath), ".drv")
}

// Records reads the index, oldest first; lines that do not parse (a torn
// write) are skipped. A cache without an index has no records.
func Records(cacheDir string) ([]Record, error) {
	return readLines[Record](cacheDir, indexFile, "build index", nil)
}

// readLines reads the JSON lines of file of the index directory (what
// names it in errors), oldest first, keeping those keep accepts (nil: all).
// Lines that do not parse (a torn write) are skipped; a missing file has
// no lines.
func readLines[T any](cacheDir, file, what string, keep func(*T) bool) ([]T, error) {
	f, err := os.Open(filepath.Join(cacheDir, Dir, file))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var v T
		if json.Unmarshal(sc.Bytes(), &v) == nil && (keep == nil || keep(&v)) {
			out = append(out, v)
		}
	}
	return out, sc.Err()
}

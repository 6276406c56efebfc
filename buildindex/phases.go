package buildindex

import (
	"bytes"
	"io"
	"os"
	"time"
)

// The phase history: one record per phase of every layered build (run,
// reused, failed or interrupted), appended as the phase ends. The editor's
// hover lists a phase's last builds from it, and a failed build stays
// known from it — across restarts of the language server — until the
// derivation is built again.

// RunStatus is how a phase of a layered build ended.
type RunStatus string

const (
	RunCached      RunStatus = "cached"      // reused from the cache
	RunRan         RunStatus = "ran"         // ran and succeeded
	RunFailed      RunStatus = "failed"      // ran and failed (its layer is kept)
	RunInterrupted RunStatus = "interrupted" // cancelled or broken off while it ran
)

// PhaseRun is one phase of one layered build.
type PhaseRun struct {
	// Time is when the phase ended (or was reused).
	Time time.Time `json:"time"`
	// Build is when the phase's build started: it groups one build's phases.
	Build   time.Time `json:"build"`
	Drv     string    `json:"drv"`
	Package string    `json:"package"`
	Phase   string    `json:"phase"`
	Index   int       `json:"index"` // 1-based
	Total   int       `json:"total"`
	Status  RunStatus `json:"status"`
	// Duration is how long the phase ran; for a reused phase, how long it
	// took when it was built.
	Duration time.Duration `json:"duration"`
	// Reason says why the phase ran (the first phase to run: what changed;
	// the others: Follows names the phase they follow).
	Reason  string `json:"reason,omitempty"`
	Follows string `json:"follows,omitempty"`
	Exit    int    `json:"exit,omitempty"`
	LogTail string `json:"logTail,omitempty"`
	Layer   string `json:"layer,omitempty"`
}

const phasesFile = "phases.jsonl"

// historyLimit is the size at which the history drops its older half.
const historyLimit = 2 << 20

// AppendRun adds one phase record to the history.
func AppendRun(cacheDir string, r PhaseRun) error {
	return appendLine(cacheDir, phasesFile, r, historyLimit)
}

// trimHalf keeps the newer half of the (locked) history file in place.
func trimHalf(f *os.File) error {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil {
		return err
	}
	cut := len(data) / 2
	if i := bytes.IndexByte(data[cut:], '\n'); i >= 0 {
		cut += i + 1
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.Write(data[cut:]) // O_APPEND: at the new end, 0
	return err
}

// Runs reads the phase history, oldest first, keeping the records keep
// accepts (nil: all). Lines that do not parse are skipped.
func Runs(cacheDir string, keep func(*PhaseRun) bool) ([]PhaseRun, error) {
	return readLines(cacheDir, phasesFile, "the phase history", keep)
}

// PhaseHistory is what the history says about one derivation: the last
// builds of its package, and its failure when its newest build failed.
type PhaseHistory struct {
	// Runs are the phases of the package's newest builds, oldest first.
	Runs []PhaseRun `json:"runs,omitempty"`
	// Failure is the failed phase of the derivation's newest build, when
	// that build failed (nil once it is built again).
	Failure *PhaseRun `json:"failure,omitempty"`
}

// HistoryOf reads the history of drvPath (of package pkg): the phases of
// the package's newest builds builds, and the derivation's failure.
func HistoryOf(cacheDir, drvPath, pkg string, builds int) (*PhaseHistory, error) {
	runs, err := Runs(cacheDir, func(r *PhaseRun) bool { return r.Package == pkg || r.Drv == drvPath })
	if err != nil {
		return nil, err
	}
	h := &PhaseHistory{}
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Drv == drvPath {
			if runs[i].Status == RunFailed {
				f := runs[i]
				h.Failure = &f
			}
			break
		}
	}
	seen := map[int64]bool{} // builds, by start
	first := len(runs)
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Package != pkg {
			continue
		}
		if b := runs[i].Build.UnixNano(); !seen[b] {
			if len(seen) == builds {
				break
			}
			seen[b] = true
		}
		first = i
	}
	for _, r := range runs[first:] {
		if r.Package == pkg && seen[r.Build.UnixNano()] {
			h.Runs = append(h.Runs, r)
		}
	}
	return h, nil
}

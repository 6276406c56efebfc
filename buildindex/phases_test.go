package buildindex

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The history keeps a derivation's failure until its next build and
// lists the package's newest builds; it trims its older half when it
// grows past the limit.
func TestPhaseHistory(t *testing.T) {
	cache := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	add := func(build time.Time, drv, phase string, status RunStatus) {
		t.Helper()
		r := PhaseRun{Time: time.Now(), Build: build, Drv: drv, Package: "hello", Phase: phase, Status: status, Duration: time.Second}
		if status == RunFailed {
			r.Exit, r.LogTail = 3, "boom"
		}
		if err := AppendRun(cache, r); err != nil {
			t.Fatal(err)
		}
	}
	b1, b2, b3 := t0, t0.Add(time.Minute), t0.Add(2*time.Minute)
	add(b1, "/nix/store/a.drv", "unpackPhase", RunRan)
	add(b1, "/nix/store/a.drv", "installPhase", RunRan)
	add(b2, "/nix/store/b.drv", "unpackPhase", RunCached)
	add(b2, "/nix/store/b.drv", "installPhase", RunFailed)
	if err := AppendRun(cache, PhaseRun{Build: b2, Drv: "/nix/store/other.drv", Package: "other", Phase: "unpackPhase", Status: RunRan}); err != nil {
		t.Fatal(err)
	}

	h, err := HistoryOf(cache, "/nix/store/b.drv", "hello", 5)
	if err != nil {
		t.Fatal(err)
	}
	if h.Failure == nil || h.Failure.Phase != "installPhase" || h.Failure.Exit != 3 {
		t.Fatalf("failure %+v", h.Failure)
	}
	if len(h.Runs) != 4 {
		t.Errorf("runs %+v", h.Runs)
	}
	if h, _ := HistoryOf(cache, "/nix/store/a.drv", "hello", 1); h.Failure != nil || len(h.Runs) != 2 || !h.Runs[0].Build.Equal(b2) {
		t.Errorf("a.drv: the newest build only, no failure: %+v", h)
	}
	// The next build of b.drv clears its failure.
	add(b3, "/nix/store/b.drv", "unpackPhase", RunCached)
	if h, _ := HistoryOf(cache, "/nix/store/b.drv", "hello", 5); h.Failure != nil || len(h.Runs) != 5 {
		t.Errorf("after the next build: %+v", h)
	}

	// Growth: the older half goes, what stays parses.
	big := strings.Repeat("x", 10_000)
	for i := 0; i < 300; i++ {
		if err := AppendRun(cache, PhaseRun{Build: time.Now(), Drv: "/nix/store/c.drv", Package: "c", Phase: "p", Status: RunFailed, LogTail: big}); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(cache, Dir, phasesFile))
	if err != nil || fi.Size() > historyLimit {
		t.Fatalf("history size %v %v", fi.Size(), err)
	}
	runs, err := Runs(cache, nil)
	if err != nil || len(runs) < 100 {
		t.Errorf("after trimming: %d runs, %v", len(runs), err)
	}
}

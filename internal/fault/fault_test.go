package fault

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A process paused at a point says so and goes on only when let go; a
// point:detail entry pauses at that detail only.
func TestPauseHoldsUntilLetGo(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("NIXLAYER_PAUSE", "after-phase:configurePhase")
	t.Setenv("NIXLAYER_PAUSE_DIR", dir)
	PointAt(AfterPhase, "unpackPhase") // another detail: no pause
	if _, err := os.Stat(filepath.Join(dir, "after-phase:unpackPhase.reached")); err == nil {
		t.Fatal("paused at a detail the test did not name")
	}
	done := make(chan struct{})
	go func() {
		PointAt(AfterPhase, "configurePhase")
		close(done)
	}()
	reached := filepath.Join(dir, "after-phase:configurePhase.reached")
	for {
		if _, err := os.Stat(reached); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatal("went on without being let go")
		case <-time.After(10 * time.Millisecond): // polls for the file the paused side writes
		}
	}
	select {
	case <-done:
		t.Fatal("went on without being let go")
	default:
	}
	if err := os.WriteFile(filepath.Join(dir, "after-phase:configurePhase.go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	<-done
}

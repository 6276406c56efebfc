package foreground

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/proc"
)

// procState is the state letter of process pid (T: stopped).
func procState(t *testing.T, pid int) string {
	t.Helper()
	s := proc.State(pid)
	if s == "" {
		t.Fatalf("no process %d", pid)
	}
	return s
}

func TestBackgroundStepsPauseForForegroundBuilds(t *testing.T) {
	// A step: a shell whose child does the work.
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); {
		if d := proc.Tree(cmd.Process.Pid); len(d) > 1 {
			child = d[1].PID
		}
		time.Sleep(10 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("the step's child did not start")
	}
	defer syscall.Kill(child, syscall.SIGKILL)
	cache := t.TempDir()
	ctx, stop := Background(context.Background(), cache, func() []string { return []string{"k-learned"} })
	defer stop()
	bg := WorkOf(ctx)
	unregister := bg.Running(cmd.Process.Pid)
	defer unregister()

	// Another process's build: a mark naming a live process (this test's
	// child stands for it) that reruns other phases.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	writeMark := func(keys ...string) string {
		t.Helper()
		data, err := json.Marshal(Build{PID: other.Process.Pid, Start: proc.StartTime(other.Process.Pid), Pkg: "p", Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir(cache), 0o700); err != nil {
			t.Fatal(err)
		}
		p := dir(cache) + "/other.json"
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitState := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if procState(t, cmd.Process.Pid) == want && procState(t, child) == want {
				return
			}
		}
		t.Fatalf("step and child in states %s %s, want %s", procState(t, cmd.Process.Pid), procState(t, child), want)
	}
	mark := writeMark("k-other")
	waitState("T")
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if bg.WaitResumed(short) == nil {
		t.Fatal("work between steps went on beside a foreground build")
	}
	os.Remove(mark)
	waitState("S")
	if err := bg.WaitResumed(ctx); err != nil {
		t.Fatal(err)
	}

	// A build that reruns the chain being learned: the work yields.
	writeMark("k-learned")
	select {
	case <-ctx.Done():
		if !Yielded(ctx) {
			t.Fatalf("ended with %v, not by yielding", context.Cause(ctx))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the background work did not yield to a build of its chain")
	}
	if s := procState(t, child); s == "T" {
		t.Fatal("a yielded step's processes stay stopped")
	}
}

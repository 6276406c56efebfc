package results

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// One registry: background work shows from its announcement, a learner is
// found by its package while it learns, a build learning in front is a
// learner but not background work, and records of dead processes are
// ignored.
func TestWorkRegistry(t *testing.T) {
	cache := t.TempDir()
	if len(Background(cache)) != 0 || Learner(cache, "hello") != nil {
		t.Fatal("an empty cache has work running")
	}

	// Announced by the process that starts it, then by itself (why kept).
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	AnnounceBackground(cache, "hello", "/nix/store/x-hello.drv", child.Process.Pid, "learning the path map")
	AnnounceBackground(cache, "hello", "/nix/store/x-hello.drv", child.Process.Pid, "")
	jobs := Background(cache)
	if len(jobs) != 1 || jobs[0].PID != child.Process.Pid || jobs[0].Why != "learning the path map" || jobs[0].Doing != "" {
		t.Fatalf("background work = %+v", jobs)
	}

	// This process learns in front: a learner, not background work.
	done := AnnounceLearning(cache, "hello", Learning{Started: time.Now(), Estimate: time.Minute, Layers: []string{"a", "b"}, Keys: []string{"ka", "kb"}})
	w := Learner(cache, "hello")
	if w == nil || w.PID != os.Getpid() || !w.Learning.Covers("b") || w.Learning.Covers("c") || !w.Learning.HasKey("ka") {
		t.Fatalf("learner = %+v", w)
	}
	if len(Background(cache)) != 1 || Learner(cache, "other") != nil {
		t.Fatal("learning in front shows as background work, or for another package")
	}
	if l := MyLearning(cache, "hello"); l == nil || !l.HasKey("kb") {
		t.Fatalf("this process's own learning = %+v", l)
	}
	done()
	if MyLearning(cache, "hello") != nil {
		t.Fatal("this process's learning is still found after it took it back")
	}
	if Learner(cache, "hello") != nil {
		t.Fatal("a learner is still found after it took its record back")
	}

	// Background work of this process that learns says what it does, and
	// stays listed once the learning ends.
	end := AnnounceBackground(cache, "hello", "/nix/store/x-hello.drv", os.Getpid(), "settling")
	doneLearning := AnnounceLearning(cache, "hello", Learning{Started: time.Now(), Layers: []string{"a"}})
	var mine *Job
	for _, j := range Background(cache) {
		if j.PID == os.Getpid() {
			mine = &j
		}
	}
	if mine == nil || !strings.HasPrefix(mine.Doing, "learning the path map of 1 phases") {
		t.Fatalf("this process's background work = %+v", mine)
	}
	doneLearning()
	if len(Background(cache)) != 2 {
		t.Fatal("background work ended with its learning")
	}
	end()

	// Gone with its process.
	child.Process.Kill()
	child.Wait()
	if jobs := Background(cache); len(jobs) != 0 {
		t.Fatalf("work of dead processes listed: %+v", jobs)
	}
}

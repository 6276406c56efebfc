package proc

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Background work runs in the idle classes, CPU and I/O, on every thread.
func TestIdlePriority(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	if err := IdlePriority(pid); err != nil {
		t.Fatal(err)
	}
	attr, err := unix.SchedGetAttr(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Policy != unix.SCHED_IDLE {
		if prio, err := unix.Getpriority(unix.PRIO_PROCESS, pid); err != nil || 20-prio != 19 {
			t.Fatalf("neither SCHED_IDLE (policy %d) nor nice 19 (%d, %v)", attr.Policy, 20-prio, err)
		}
	}
	class, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(pid), 0)
	if errno != 0 || class>>13 != 3 {
		t.Fatalf("I/O class %d (%v), want idle (3)", class>>13, errno)
	}
}

// A tree stops and continues whole; its start time names a process.
func TestTreeStopsAndContinues(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	defer cmd.Wait()
	defer SignalTree(cmd.Process.Pid, false)
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	var tree []Member
	for range 100 {
		if tree = Tree(pid); len(tree) > 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(tree) < 2 || tree[1].Parent != pid || Parent(tree[1].PID) != pid {
		t.Fatalf("tree of %d: %+v", pid, tree)
	}
	if !Alive(pid) || Alive(-1) || StartTime(pid) == 0 || StartTime(pid) != StartTime(pid) {
		t.Fatalf("alive %v, start %d", Alive(pid), StartTime(pid))
	}
	for _, stop := range []bool{true, false} {
		SignalTree(pid, stop)
		want := map[bool]string{true: "T", false: "S"}[stop]
		deadline := time.Now().Add(5 * time.Second)
		for State(pid) != want || State(tree[1].PID) != want {
			if time.Now().After(deadline) {
				t.Fatalf("stop %v: states %s %s", stop, State(pid), State(tree[1].PID))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

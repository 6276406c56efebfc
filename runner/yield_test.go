package runner

import (
	"os/exec"
	"testing"

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
	if err := idlePriority(pid); err != nil {
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

// Package proc reads and steers processes by pid on Linux, for the
// background work that must not compete with what a user waits for and the
// marks that say which builds run: whether a process lives, when it started
// (against a reused pid), its parent and state, its tree, stopping and
// continuing that tree, and the idle scheduling classes.
package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Alive reports whether process pid exists (another user's too).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Stat are the fields of /proc/PID/stat after the command name (the state
// first), nil when unreadable. The name may hold spaces and parentheses:
// the fields follow the last ')'.
func Stat(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// State is the state letter of process pid (R, S, T: stopped, …; "" when
// unknown).
func State(pid int) string {
	if f := Stat(pid); len(f) > 0 {
		return f[0]
	}
	return ""
}

// StartTime is the start time of process pid in clock ticks since boot (0
// when unknown): with the pid, it names a process even after its pid is
// reused.
func StartTime(pid int) uint64 {
	fields := Stat(pid)
	if len(fields) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64) // field 22 of stat(5)
	return n
}

// Parent is the parent of process p (0 when unknown).
func Parent(p int) int {
	fields := Stat(p)
	if len(fields) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(fields[1])
	return pp
}

// Member is a process of a tree and the parent it was seen under.
type Member struct{ PID, Parent int }

// Tree lists pid and the processes under it, parents first.
func Tree(pid int) []Member {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []Member{{PID: pid}}
	}
	children := map[int][]int{}
	for _, ent := range entries {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if pp := Parent(p); pp > 0 {
			children[pp] = append(children[pp], p)
		}
	}
	out := []Member{{PID: pid}}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].PID] {
			out = append(out, Member{PID: c, Parent: out[i].PID})
		}
	}
	return out
}

// SignalTree stops (SIGSTOP) or continues (SIGCONT) process pid (a child
// not yet reaped) and its descendants. Parents are stopped before their
// children, and the tree is listed again until no new process shows up, so
// none forks past it. Each process is signalled through a pidfd opened
// while its parent is seen to be in the tree, so a process ID freed and
// taken by another process meanwhile is never signalled.
func SignalTree(pid int, stop bool) {
	sig := unix.SIGCONT
	if stop {
		sig = unix.SIGSTOP
	}
	done := map[int]bool{}
	for range 5 {
		more := false
		for _, p := range Tree(pid) {
			if done[p.PID] {
				continue
			}
			done[p.PID], more = true, true
			fd, err := unix.PidfdOpen(p.PID, 0)
			if err != nil {
				continue // gone, or no pidfds (Linux < 5.3): not signalled
			}
			if p.PID == pid || Parent(p.PID) == p.Parent {
				unix.PidfdSendSignal(fd, sig, nil, 0)
			}
			unix.Close(fd)
		}
		if !more {
			return
		}
	}
}

// WaitExit blocks until process pid (a child) exits, leaving it to be
// reaped.
func WaitExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// IdlePriority puts every thread of process pid in the idle classes: CPU
// SCHED_IDLE (nice 19 where that is refused) and I/O idle. Threads and
// processes it starts later inherit them. Threads are listed twice, for
// those the process starts meanwhile.
func IdlePriority(pid int) error {
	var errs []error
	for range 2 {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("listing the threads of %d: %w", pid, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0); err != nil {
				if perr := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); perr != nil {
					errs = append(errs, fmt.Errorf("idle CPU priority for thread %d: %w", tid, err))
				}
			}
			if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioIdle); e != 0 {
				errs = append(errs, fmt.Errorf("idle I/O priority for thread %d: %w", tid, e))
			}
		}
	}
	return errors.Join(errs...)
}

// ioprio_set(2): IOPRIO_WHO_PROCESS, and IOPRIO_CLASS_IDLE in the class bits.
const (
	ioprioWhoProcess = 1
	ioprioIdle       = 3 << 13
)

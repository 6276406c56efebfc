package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// The scripts' commands for `nixlayer daemon` and its unprivileged users
// (scripts/install-deps.sh creates them: nixlayer-test and nixlayer-test2,
// which Nix's allowed-users lets in, and nixlayer-denied); scriptCmds
// names them.

type scriptDaemon struct{ d *e2etest.Daemon }

func daemonOf(ts *testscript.TestScript) *e2etest.Daemon {
	d := ts.Value(scriptDaemon{}).(*scriptDaemon).d
	if d == nil {
		ts.Fatalf("no daemon: run `daemon start` first")
	}
	return d
}

// daemon start: starts `nixlayer daemon` with its own socket, cache and
// nix.conf (allowed-users: root and the two test users), with copies of
// the binary and the fixtures the users can read: $DAEMON_BIN,
// $DAEMON_TESTDATA, $DAEMON_CACHE, $DAEMON_RESULTS (per uid), $DAEMON_DIR;
// $USERWORK is nixlayer-test's own directory. Stopped at the script's end.
//
// daemon log: prints the end of the daemon's log.
//
// daemon raw-client: builds a client that speaks the daemon's protocol
// directly (internal/e2etest/rawclient: raw calls, descriptors with them,
// oversized messages, many connections) as $RAWCLIENT, which the test
// users can run.
//
// daemon nofile N: lowers the daemon's limit of open descriptors to N
// (a descriptor flood then reaches it unless descriptors are refused).
//
// daemon fds-below N: the daemon holds fewer than N descriptors open.
//
// daemon hup: sends the daemon SIGHUP and waits (60 s) until its log shows
// that it read Nix's users again.
func cmdStartDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: daemon start|log|raw-client|nofile N|fds-below N|hup")
	}
	switch args[0] {
	case "log":
		fmt.Fprintln(ts.Stdout(), daemonOf(ts).LogTail())
		return
	case "raw-client":
		bin, err := daemonOf(ts).RawClient()
		ts.Check(err)
		ts.Setenv("RAWCLIENT", bin)
		return
	case "nofile", "fds-below":
		if len(args) != 2 {
			ts.Fatalf("usage: daemon %s N", args[0])
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		pid := daemonOf(ts).PID()
		if args[0] == "nofile" {
			ts.Check(unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(n), Max: uint64(n)}, nil))
			return
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		ts.Check(err)
		if len(fds) >= n {
			ts.Fatalf("the daemon holds %d descriptors open, want fewer than %d", len(fds), n)
		}
		return
	case "hup":
		d := daemonOf(ts)
		reads := func() int { return strings.Count(d.Log(), `"msg":"users"`) }
		before := reads()
		ts.Check(syscall.Kill(d.PID(), syscall.SIGHUP))
		for deadline := time.Now().Add(time.Minute); reads() == before; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				ts.Fatalf("the daemon did not read Nix's users again after SIGHUP:\n%s", d.LogTail())
			}
		}
		return
	case "start":
	default:
		ts.Fatalf("usage: daemon start|log|raw-client|nofile N|fds-below N|hup")
	}
	d, err := e2etest.LaunchDaemon(nixlayerBin)
	ts.Check(err)
	ts.Value(scriptDaemon{}).(*scriptDaemon).d = d
	ts.Defer(func() { d.Stop(); d.Remove() })
	work, err := d.UserDir(e2etest.TestUser)
	ts.Check(err)
	for k, v := range map[string]string{"DAEMON_BIN": d.Bin, "DAEMON_TESTDATA": d.Testdata, "DAEMON_CACHE": d.Cache,
		"DAEMON_RESULTS": d.Results, "DAEMON_DIR": d.Dir, "USERWORK": work} {
		ts.Setenv(k, v)
	}
}

// userCommand is `as USER [K=V...] COMMAND ARGS...` as a command: run as
// USER in the user's directory, with a user's environment talking to the
// script's daemon (plus K=V); nixlayer is the daemon's copy.
func userCommand(ts *testscript.TestScript, args []string) *exec.Cmd {
	if len(args) < 2 {
		ts.Fatalf("usage: as USER [K=V...] COMMAND ARGS...")
	}
	d := daemonOf(ts)
	a, err := e2etest.FindAccount(args[0])
	ts.Check(err)
	dir, err := d.UserDir(args[0])
	ts.Check(err)
	var env []string
	args = args[1:]
	for len(args) > 1 && strings.Contains(args[0], "=") {
		env, args = append(env, args[0]), args[1:]
	}
	name := args[0]
	if name == "nixlayer" {
		name = d.Bin
	}
	cmd := d.CommandAs(context.Background(), a, dir, name, args[1:]...)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// as USER [K=V...] COMMAND ARGS...: runs the command as USER (see
// userCommand); its output is the script's stdout and stderr.
func cmdAs(ts *testscript.TestScript, neg bool, args []string) {
	cmd := userCommand(ts, args)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	}()
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	err := cmd.Run()
	if err == nil && neg {
		ts.Fatalf("unexpected success")
	}
	if err != nil && !neg {
		ts.Fatalf("%v\ndaemon log (tail):\n%s", err, daemonOf(ts).LogTail())
	}
}

// tmux-wait USER SOCKET TEXT: waits (90 s) until the user's tmux session
// on SOCKET shows TEXT; stdout is the screen.
func cmdTmuxWait(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: tmux-wait USER SOCKET TEXT")
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cmd := userCommand(ts, []string{args[0], "tmux", "-S", args[1], "capture-pane", "-p", "-t", "nl", "-S", "-100"})
		screen, _ := cmd.Output()
		if strings.Contains(string(screen), args[2]) {
			fmt.Fprint(ts.Stdout(), string(screen))
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("the terminal never showed %q:\n%s\ndaemon:\n%s", args[2], screen, daemonOf(ts).LogTail())
		}
	}
}

// owned-by USER PATH: every file under PATH belongs to USER.
func cmdOwnedBy(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: owned-by USER PATH")
	}
	a, err := e2etest.FindAccount(args[0])
	ts.Check(err)
	ts.Check(filepath.WalkDir(ts.MkAbs(args[1]), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != uint32(a.UID) {
			return fmt.Errorf("%s belongs to uid %d, not %s", p, uid, args[0])
		}
		return nil
	}))
}

// has-prefix STRING PREFIX
func cmdHasPrefix(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: has-prefix STRING PREFIX")
	}
	if strings.HasPrefix(args[0], args[1]) == neg {
		ts.Fatalf("%q: prefix %q %v, want %v", args[0], args[1], !neg, neg)
	}
}

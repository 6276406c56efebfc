package e2etest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/logtail"
)

// Unprivileged users the daemon tests act as (scripts/install-deps.sh
// creates them): two that Nix's allowed-users lets in, one it does not.
const (
	TestUser   = "nixlayer-test"
	OtherUser  = "nixlayer-test2"
	DeniedUser = "nixlayer-denied"
)

// Daemon is a `nixlayer daemon` started for a test, with its own socket,
// cache and nix.conf (allowed-users = root and the two test users), and
// copies of the binary and the fixtures that the test users can read.
type Daemon struct {
	Dir      string // shared, world-readable
	Socket   string
	Cache    string
	Results  string // per-user results: Results/<uid>
	Bin      string
	Testdata string
	cmd      *exec.Cmd
	log      lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartDaemon starts nixlayer daemon from bin; it stops with the test.
func StartDaemon(t *testing.T, bin string) *Daemon {
	t.Helper()
	d, err := LaunchDaemon(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", logtail.Lines(d.log.String(), 40))
		}
		d.Remove()
	})
	return d
}

// LaunchDaemon starts nixlayer daemon from bin in a new directory; the
// caller stops it (Stop) and removes the directory (Remove).
func LaunchDaemon(bin string) (*Daemon, error) {
	for _, u := range []string{TestUser, OtherUser, DeniedUser} {
		if _, err := user.Lookup(u); err != nil {
			return nil, fmt.Errorf("user %s is missing: run scripts/install-deps.sh (it creates the test users)", u)
		}
	}
	if out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "store", "ping", "--store", "daemon").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nix-daemon does not answer (scripts/install-deps.sh starts it): %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "nixlayer-daemon-test-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "daemon.sock"), Cache: filepath.Join(dir, "cache"),
		Results: filepath.Join(dir, "results"), Bin: filepath.Join(dir, "nixlayer"), Testdata: filepath.Join(dir, "testdata")}
	if err := d.start(bin); err != nil {
		d.Stop()
		d.Remove()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start(bin string) error {
	if out, err := exec.Command("cp", bin, d.Bin).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the binary: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-r", Testdata(), d.Testdata).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the fixtures: %v\n%s", err, out)
	}
	exec.Command("chmod", "-R", "a+rX", d.Testdata, d.Bin).Run()
	conf := filepath.Join(d.Dir, "nixconf")
	os.Mkdir(conf, 0o755)
	base, _ := os.ReadFile("/etc/nix/nix.conf")
	settings := string(base) + "\nallowed-users = root " + TestUser + " " + OtherUser + "\ntrusted-users = root\n"
	if err := os.WriteFile(filepath.Join(conf, "nix.conf"), []byte(settings), 0o644); err != nil {
		return err
	}
	d.cmd = exec.Command(d.Bin, "daemon", "--socket", d.Socket, "--cache", d.Cache, "--results", d.Results)
	d.cmd.Env = append(os.Environ(), "NIX_CONF_DIR="+conf)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			return nil
		}
		if i == 100 {
			return fmt.Errorf("nixlayer daemon did not start:\n%s", d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the daemon (SIGTERM, SIGKILL after 20 s).
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// Remove deletes the daemon's directory (results are read-only trees
// owned by the users).
func (d *Daemon) Remove() {
	exec.Command("chmod", "-R", "u+w", d.Dir).Run()
	os.RemoveAll(d.Dir)
}

// LogTail is the end of the daemon's log.
func (d *Daemon) LogTail() string { return logtail.Lines(d.log.String(), 40) }

// Account is a user of this machine.
type Account struct {
	Name     string
	UID, GID int
	Home     string
}

// LookupAccount finds a user.
func LookupAccount(t *testing.T, name string) Account {
	t.Helper()
	a, err := FindAccount(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// FindAccount finds a user.
func FindAccount(name string) (Account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Account{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Account{Name: name, UID: uid, GID: gid, Home: u.HomeDir}, nil
}

// WorkDir is a directory of the user's own in the test's directory.
func (d *Daemon) WorkDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := d.UserDir(name)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// UserDir is (makes) a directory of the user's own in the daemon's
// directory.
func (d *Daemon) UserDir(name string) (string, error) {
	a, err := FindAccount(name)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(d.Dir, "work-"+name)
	os.MkdirAll(dir, 0o700)
	return dir, os.Chown(dir, a.UID, a.GID)
}

// Env is the environment of a user's process that talks to this daemon.
func (d *Daemon) Env(a Account) []string {
	return []string{
		"HOME=" + a.Home, "USER=" + a.Name, "LOGNAME=" + a.Name,
		"PATH=/usr/local/bin:/usr/bin:/bin", "TERM=xterm-256color", "LANG=C.UTF-8",
		"NIXLAYER_DAEMON_SOCKET=" + d.Socket, "NIX_REMOTE=daemon", "NIXLAYER_BACKGROUND_LEARN=0",
	}
}

// Command runs name as the user, in dir.
func (d *Daemon) Command(ctx context.Context, t *testing.T, userName, dir, name string, args ...string) *exec.Cmd {
	t.Helper()
	return d.CommandAs(ctx, LookupAccount(t, userName), dir, name, args...)
}

// CommandAs runs name as the account, in dir.
func (d *Daemon) CommandAs(ctx context.Context, a Account, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = d.Env(a)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID)}}
	return cmd
}

// RunAs runs name as the user in dir and collects its output.
func (d *Daemon) RunAs(t *testing.T, userName, dir, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := d.Command(ctx, t, userName, dir, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// Log is the daemon's log so far.
func (d *Daemon) Log() string { return d.log.String() }

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// RawClient builds rawclient (a client speaking the daemon's protocol
// directly, as a hostile user would) into the daemon's directory, where
// the test users can run it.
func (d *Daemon) RawClient() (string, error) {
	bin := filepath.Join(d.Dir, "rawclient")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/e2etest/rawclient")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building rawclient: %v\n%s", err, out)
	}
	return bin, os.Chmod(bin, 0o755)
}

// DialAs connects to the daemon's socket with the user's credentials, as
// a client the user wrote would (the requests nixlayer itself never
// sends): the connecting thread takes the user's effective ids (Linux
// credentials are per thread), dials, and takes root's back.
//
// The thread must not exit: a child started from it with a parent-death
// signal (a test's registry) would be killed with it. Only when root's
// ids cannot be taken back does the thread stay locked and exit.
func (d *Daemon) DialAs(a Account) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		keep := ^uintptr(0) // -1: unchanged
		setids := func(uid, gid uintptr) error {
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, keep, gid, keep); e != 0 {
				return fmt.Errorf("taking gid %d: %w", gid, e)
			}
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keep, uid, keep); e != 0 {
				return fmt.Errorf("taking uid %d: %w", uid, e)
			}
			return nil
		}
		restore := func() error {
			// uid first: only root may take gid 0 back.
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keep, 0, keep); e != 0 {
				return e
			}
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, keep, 0, keep); e != 0 {
				return e
			}
			return nil
		}
		var r dialed
		if r.err = setids(uintptr(a.UID), uintptr(a.GID)); r.err == nil {
			r.c, r.err = net.Dial("unix", d.Socket)
		}
		if restore() == nil {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	return r.c, r.err
}

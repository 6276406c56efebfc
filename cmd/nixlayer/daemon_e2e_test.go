package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// Issue 15: an unprivileged user on a multi-user Nix (nix-daemon) uses
// nixlayer through `nixlayer daemon`: a cold build, a resume after a
// postInstall edit, plan, a shell in the build's state (driven in tmux),
// exact results registered (nix-build --check agrees), results outside the
// store private to their user, gc refused to the untrusted, a user outside
// allowed-users refused, and a build cancelled from the client.
func TestDaemonServesUnprivilegedUsers(t *testing.T) {
	e2etest.Require(t)
	d := e2etest.StartDaemon(t, nixlayerBin)
	me, other := e2etest.TestUser, e2etest.OtherUser
	work := d.WorkDir(t, me)
	salt := e2etest.Salt()
	pkg := func(extra ...string) []string {
		return append([]string{"-f", d.Testdata, "-A", "hello", "--arg", "nfiles", "20", "--argstr", "salt", salt}, extra...)
	}
	nixlayer := func(user string, args ...string) e2etest.Result {
		t.Helper()
		return d.RunAs(t, user, work, d.Bin, args...)
	}
	// nixCheck has Nix rebuild the derivation itself and compare.
	nixCheck := func(args []string) {
		t.Helper()
		cmd := exec.Command("nix-build", append([]string{"--no-out-link", "--check", "--option", "build-hook", ""}, args[1:]...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nix-build --check of the daemon's result: %v\n%s", err, out)
		}
	}

	// Cold build.
	r := nixlayer(me, append([]string{"build", "-Q"}, pkg()...)...)
	if r.Err != nil {
		t.Fatalf("cold build as %s: %v\n%s\ndaemon:\n%s", me, r.Err, r.Stderr, d.Log())
	}
	out := strings.TrimSpace(r.Stdout)
	if !strings.HasPrefix(out, "/nix/store/") || exec.Command("nix-store", "--check-validity", out).Run() != nil {
		t.Fatalf("cold build result %q is not a valid store path:\n%s", out, r.Stderr)
	}
	if link, err := os.Readlink(filepath.Join(work, "result")); err != nil || link != out {
		t.Fatalf("./result -> %q (%v), want %s", link, err, out)
	}
	if strings.Contains(r.Stderr, "level=") {
		t.Errorf("library logging reached the terminal:\n%s", r.Stderr)
	}
	nixCheck(pkg())

	// Resume after a postInstall edit: configure and build are reused.
	edited := pkg("--argstr", "postInstallExtra", "echo edited > $out/edited")
	r = nixlayer(me, append([]string{"build", "-Q", "--exact"}, edited...)...) // waits for the map: registered at once
	if r.Err != nil {
		t.Fatalf("resume: %v\n%s", r.Err, r.Stderr)
	}
	for _, want := range []string{"configurePhase     cached", "buildPhase         cached", "installPhase       running", "outputs registered in the Nix store"} {
		if !strings.Contains(r.Stderr, want) {
			t.Fatalf("the resume lacks %q:\n%s", want, r.Stderr)
		}
	}
	resumed := strings.TrimSpace(r.Stdout)
	if b, err := os.ReadFile(filepath.Join(resumed, "edited")); err != nil || string(b) != "edited\n" {
		t.Fatalf("edited output: %q %v", b, err)
	}
	nixCheck(edited)

	// plan: everything cached now.
	r = nixlayer(me, append([]string{"plan"}, edited...)...)
	if r.Err != nil || !strings.Contains(r.Stdout, "✓ buildPhase") || strings.Contains(r.Stdout, "▶") {
		t.Fatalf("plan: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}

	// A shell in the state after buildPhase, in a real terminal (tmux).
	shellInTmux(t, d, me, work, pkg())

	// A result kept outside the store (--from forces reuse of a layer whose
	// key differs) is the user's own: another user cannot read it.
	forced := pkg("--argstr", "postInstallExtra", "echo forced > $out/forced")
	r = nixlayer(me, append([]string{"build", "-Q", "--from", "fixupPhase"}, forced...)...)
	if r.Err != nil || !strings.Contains(r.Stderr, "NOT VERIFIED") {
		t.Fatalf("--from build: %v\n%s", r.Err, r.Stderr)
	}
	private := strings.TrimSpace(r.Stdout)
	myAccount := e2etest.LookupAccount(t, me)
	if !strings.HasPrefix(private, filepath.Join(d.Results, strconv.Itoa(myAccount.UID))+"/") {
		t.Fatalf("the --from result %s is not in the user's results directory", private)
	}
	if r := d.RunAs(t, me, work, "cat", private+"/bin/hello"); r.Err != nil {
		t.Fatalf("the owner cannot read its result: %v %s", r.Err, r.Stderr)
	}
	if r := d.RunAs(t, other, "/", "cat", private+"/bin/hello"); r.Err == nil || !strings.Contains(r.Stderr, "Permission denied") {
		t.Fatalf("%s read %s's result: %v %s", other, me, r.Err, r.Stderr)
	}
	if r := d.RunAs(t, other, "/", "ls", filepath.Dir(private)); r.Err == nil {
		t.Fatalf("%s listed %s's results: %s", other, me, r.Stdout)
	}

	// gc changes the shared cache: trusted users only.
	if r := nixlayer(me, "gc", "--dry-run"); r.Err == nil || !strings.Contains(r.Stderr, "trusted") {
		t.Fatalf("gc by an untrusted user: %v\n%s", r.Err, r.Stderr)
	}
	// A user outside allowed-users gets one clear line.
	if r := d.RunAs(t, e2etest.DeniedUser, "/", d.Bin, append([]string{"plan"}, pkg()...)...); r.Err == nil ||
		!strings.Contains(r.Stderr, "not allowed to use the nixlayer daemon") || !strings.Contains(r.Stderr, "allowed-users") {
		t.Fatalf("a user outside allowed-users: %v\n%s", r.Err, r.Stderr)
	}
	// Without a daemon: one line saying how to start it.
	noDaemon := d.Command(context.Background(), t, me, work, d.Bin, "status")
	noDaemon.Env = append(noDaemon.Env, "NIXLAYER_DAEMON_SOCKET="+filepath.Join(d.Dir, "nothing.sock"))
	if b, err := noDaemon.CombinedOutput(); err == nil || !strings.Contains(string(b), "nixlayer daemon") || strings.Count(strings.TrimSpace(string(b)), "\n") != 0 {
		t.Fatalf("without a daemon: %v\n%s", err, b)
	}

	// Cancelling the client (^C) stops the build in the daemon.
	cancelled := pkg("--argstr", "preBuildExtra", "sleep 37.125")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := d.Command(ctx, t, me, work, d.Bin, append([]string{"build", "-Q"}, cancelled...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "buildPhase") && strings.Contains(sc.Text(), "running") {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err == nil {
		t.Fatal("the cancelled build succeeded")
	}
	deadline := time.Now().Add(15 * time.Second)
	for sleeping(t, "37.125") {
		if time.Now().After(deadline) {
			t.Fatal("the build's sandbox still runs 15 s after the client was cancelled")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sleeping reports whether a process runs `sleep ARG`.
func sleeping(t *testing.T, arg string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "sleep\x00"+arg) {
			return true
		}
	}
	return false
}

// shellInTmux opens `nixlayer shell --at build` as the user in a tmux
// session and checks that the shell runs in the sandbox on the layer.
func shellInTmux(t *testing.T, d *e2etest.Daemon, user, work string, pkg []string) {
	t.Helper()
	sock := filepath.Join(work, "tmux.sock")
	tmux := func(args ...string) e2etest.Result {
		return d.RunAs(t, user, work, "tmux", append([]string{"-S", sock}, args...)...)
	}
	shell := append([]string{d.Bin, "shell", "--at", "build"}, pkg...)
	quoted := make([]string, len(shell))
	for i, a := range shell {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	if r := tmux("new-session", "-d", "-s", "nl", "-x", "200", "-y", "50", strings.Join(quoted, " ")+"; echo SHELL-EXITED $?; sleep 30"); r.Err != nil {
		t.Fatalf("tmux: %v %s", r.Err, r.Stderr)
	}
	defer tmux("kill-server")
	wait := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			screen := tmux("capture-pane", "-p", "-t", "nl", "-S", "-100").Stdout
			if strings.Contains(screen, want) {
				return screen
			}
			if time.Now().After(deadline) {
				t.Fatalf("the shell's terminal never showed %q:\n%s\ndaemon:\n%s", want, screen, d.Log())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	wait("[nixlayer buildPhase]")
	tmux("send-keys", "-t", "nl", `echo "IN-$((6*7)) uid=$(id -u) $(ls Makefile) tty=$([ -t 0 ] && echo yes)"`, "Enter")
	screen := wait("IN-42 uid=1000 Makefile tty=yes")
	if !strings.Contains(screen, "shell in the state after buildPhase") {
		t.Errorf("no notice of the state the shell opened:\n%s", screen)
	}
	// ^C reaches the shell (a terminal of its own), not nixlayer.
	tmux("send-keys", "-t", "nl", "sleep 100", "Enter")
	time.Sleep(300 * time.Millisecond)
	tmux("send-keys", "-t", "nl", "C-c", "")
	tmux("send-keys", "-t", "nl", `echo "STILL-$((1+1))"`, "Enter")
	wait("STILL-2")
	tmux("send-keys", "-t", "nl", "exit", "Enter")
	wait("SHELL-EXITED 0")
}

package hook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NixHookCommand is Nix's own build hook, to which declined derivations go
// so `builders` keeps working: $NIXLAYER_NIX_HOOK (a command line), else
// build-remote next to the nix binary (Nix ≤ 2.18 layout, e.g.
// /usr/libexec/nix/build-remote on Debian), else `nix __build-remote`.
func NixHookCommand() []string {
	if v := strings.Fields(os.Getenv("NIXLAYER_NIX_HOOK")); len(v) > 0 {
		return v
	}
	if nix, err := exec.LookPath("nix"); err == nil {
		if real, err := filepath.EvalSymlinks(nix); err == nil {
			nix = real
		}
		for _, c := range []string{
			filepath.Join(filepath.Dir(nix), "..", "libexec", "nix", "build-remote"),
			"/usr/libexec/nix/build-remote",
		} {
			if _, err := os.Stat(c); err == nil {
				return []string{filepath.Clean(c)}
			}
		}
		return []string{nix, "__build-remote"}
	}
	return []string{"/usr/libexec/nix/build-remote"}
}

// haveBuilders tells whether the builders setting names any machine: only
// then is Nix's own hook worth starting (it declines permanently without).
func haveBuilders(settings map[string]string) bool {
	b := strings.TrimSpace(settings["builders"])
	if strings.HasPrefix(b, "@") {
		data, err := os.ReadFile(strings.TrimPrefix(b, "@"))
		if err != nil {
			return false
		}
		b = string(data)
	}
	for _, line := range strings.FieldsFunc(b, func(r rune) bool { return r == '\n' || r == ';' }) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return true
		}
	}
	return false
}

// forwarder runs Nix's own hook as a child and asks it about the
// derivations nixlayer declines.
type forwarder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader // the child's stderr (and stdout, as Nix sets it up)
	dead   bool
	reply  io.Writer // our stderr
	waited chan error
}

// startForwarder starts argv (plus the verbosity) with the settings Nix
// gave us; the child writes its build log on our fd 4 directly.
func startForwarder(argv []string, verbosity string, settings map[string]string, buildLog, buildLogRead *os.File, reply io.Writer) (*forwarder, error) {
	cmd := exec.Command(argv[0], append(argv[1:], verbosity)...)
	// build-remote is a link to nix, which dispatches on its name.
	cmd.Args[0] = filepath.Base(argv[0])
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.ExtraFiles = []*os.File{nil, buildLog, buildLogRead}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("starting Nix's build hook %s: %w", strings.Join(argv, " "), err)
	}
	pw.Close()
	f := &forwarder{cmd: cmd, stdin: stdin, out: bufio.NewReader(pr), reply: reply, waited: make(chan error, 1)}
	go func() { f.waited <- cmd.Wait() }()
	if err := WriteSettings(stdin, settings); err != nil {
		f.close()
		return nil, fmt.Errorf("passing settings to Nix's build hook: %w", err)
	}
	return f, nil
}

// ask forwards one request and returns the child's verdict. Log lines the
// child prints before its answer are passed on. A child that says
// decline-permanently (it has no machines) or dies is not asked again;
// nixlayer itself still answers the next requests, so that becomes a
// plain decline.
func (f *forwarder) ask(req *Request) (Verdict, error) {
	if f.dead {
		return Decline, nil
	}
	// A write error means the child already exited (e.g. it declined
	// permanently right after the settings); its last words are still
	// readable below.
	_ = WriteRequest(f.stdin, req)
	for {
		line, err := f.out.ReadString('\n')
		if err != nil {
			f.close()
			return Decline, nil
		}
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, "# ") {
			fmt.Fprintln(f.reply, line)
			continue
		}
		switch v := strings.TrimPrefix(line, "# "); v {
		case "accept":
			return Accept, nil
		case "postpone":
			return Postpone, nil
		case "decline":
			return Decline, nil
		case "decline-permanently":
			f.close()
			return Decline, nil
		default:
			f.close()
			return Decline, fmt.Errorf("Nix's build hook answered %q", v)
		}
	}
}

// handOver completes an accepted forward: the machine line goes to Nix,
// Nix's remaining input (inputs, missing outputs) to the child, the
// child's messages back to Nix; it returns the child's exit code.
func (f *forwarder) handOver(ctx context.Context, stdin io.Reader) int {
	machine, err := f.out.ReadString('\n')
	if err != nil {
		fmt.Fprintf(f.reply, "nixlayer: Nix's build hook accepted but sent no machine name: %v\n", err)
		machine = "unknown\n"
	}
	fmt.Fprint(f.reply, machine)
	go func() {
		io.Copy(f.stdin, stdin)
		f.stdin.Close()
	}()
	io.Copy(f.reply, f.out)
	select {
	case err = <-f.waited:
	case <-ctx.Done():
		f.cmd.Process.Kill()
		err = <-f.waited
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			return 1
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

func (f *forwarder) close() {
	if f.dead {
		return
	}
	f.dead = true
	f.stdin.Close()
	f.cmd.Process.Kill()
	<-f.waited
}

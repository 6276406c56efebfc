package daemon

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/daemon/protocol"
	"github.com/nixlayer/nixlayer/runner"
)

// Shell runs the shell in the daemon's sandbox on a pty made here: its
// slave side goes to the daemon with the request (SCM_RIGHTS, on a
// connection of its own) and becomes the shell's controlling terminal;
// the master side is bridged to the caller's terminal, which is in raw
// mode meanwhile (keys such as ^C and ^Z reach the shell), and window size
// changes follow.
func (c *Client) Shell(ctx context.Context, req api.ShellRequest, t api.Terminal) (*runner.ShellResult, error) {
	t = t.OrStd()
	master, slave, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer master.Close()
	defer slave.Close()
	notice := t.Notice
	if term.IsTerminal(int(t.In.Fd())) {
		pty.InheritSize(t.In, master)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				pty.InheritSize(t.In, master)
			}
		}()
		if old, err := term.MakeRaw(int(t.In.Fd())); err == nil {
			defer term.Restore(int(t.In.Fd()), old)
			notice = crlf{t.Notice} // raw mode: a line feed no longer returns the carriage
		}
	}
	sc, err := Dial(ctx, c.socket)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	go io.Copy(master, t.In)
	copied := make(chan struct{})
	go func() { io.Copy(t.Out, master); close(copied) }()
	sc.fc.SendFiles(slave)
	var res runner.ShellResult
	err = sc.call(ctx, protocol.MethodShell, req, api.Output{Log: notice}, &res)
	// The shell has ended: once our copy of the slave is closed too, the
	// master reads what is left and then fails; wait for that, briefly.
	slave.Close()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// crlf writes "\r\n" for "\n", for a terminal in raw mode.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

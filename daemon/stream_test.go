package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/internal/rpcframe"
)

// sendFDs writes one byte with n descriptors (of /dev/null) on c.
func sendFDs(t *testing.T, c *net.UnixConn, n int) {
	t.Helper()
	var fds []int
	for range n {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds = append(fds, int(f.Fd()))
	}
	if _, _, err := c.WriteMsgUnix([]byte("x"), syscall.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
}

func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// Descriptors are closed as they arrive unless the peer is allowed, and
// then only one is held at a time; dropFile closes it.
func TestDescriptorsNotHeld(t *testing.T) {
	a, b := socketPair(t)
	fc := newFDConn(b)
	buf := make([]byte, 16)
	for range 3 {
		sendFDs(t, a, 3)
		if _, err := fc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if fc.received != nil || fc.droppedFiles() != 9 {
		t.Fatalf("before the access check: held %v, closed %d of 9", fc.received, fc.droppedFiles())
	}
	fc.allowFiles()
	sendFDs(t, a, 3)
	sendFDs(t, a, 1)
	for read := 0; read < 2; {
		n, err := fc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		read += n
	}
	if fc.received == nil || fc.droppedFiles() != 12 {
		t.Fatalf("allowed: held %v, closed %d of 12", fc.received, fc.droppedFiles())
	}
	fc.dropFile()
	if _, err := fc.takeFile(); err == nil || fc.droppedFiles() != 13 {
		t.Fatalf("a dropped descriptor was taken (closed %d)", fc.droppedFiles())
	}
}

// FuzzReadRequest: whatever a user sends, decoding a request returns an
// answer or an error, within its bounds.
func FuzzReadRequest(f *testing.F) {
	call := func(method, request string) []byte {
		return rpcframe.Frame([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{"token":"1","request":` + request + `}}`))
	}
	f.Add(call(methodBuild, `{"drvPath":"/nix/store/aaaa-x.drv","from":"build"}`))
	f.Add(call(methodReadLayerFile, `{"layer":"0123456789ab","path":"/build/x","offset":-1,"length":99999999999}`))
	f.Add(call(methodShell, `{"drvPath":"","at":"failed","keep":true}`))
	f.Add(call(methodResults, `{"drvs":null}`))
	f.Add(call(methodStatus, `null`))
	f.Add(rpcframe.Frame([]byte(`{"jsonrpc":"2.0","method":"nixlayer/cancel","params":{"token":"1"}}`)))
	f.Add([]byte("Content-Length: 99999999999\r\n\r\n"))
	f.Add([]byte("Content-Length: 5\r\nContent-Length: 2\r\n\r\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bufio.NewReader(bytes.NewReader(data))
		for range 4 {
			if _, err := decodeRequest(in); err != nil {
				return
			}
		}
	})
}

// failingListener fails Accept with EMFILE a few times, then is closed.
type failingListener struct {
	net.Listener
	fails, calls int
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls++
	if l.calls <= l.fails {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return nil, net.ErrClosed
}

func (l *failingListener) Close() error   { return nil }
func (l *failingListener) Addr() net.Addr { return &net.UnixAddr{Name: "test", Net: "unix"} }

// Running out of descriptors does not stop the daemon: Accept is retried.
func TestAcceptErrorsRetried(t *testing.T) {
	s := &Server{log: zap.NewNop()}
	ln := &failingListener{fails: 3}
	err := s.Serve(context.Background(), ln)
	if ln.calls != 4 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve returned %v after %d calls to Accept, want the closed listener's error after 4", err, ln.calls)
	}
}

// A user's count stops at the limit and is per user.
func TestPerUserLimit(t *testing.T) {
	p := perUser{limit: 2}
	if !p.take(1) || !p.take(1) || p.take(1) || !p.take(2) {
		t.Fatal("the limit is not per user")
	}
	p.give(1)
	if !p.take(1) {
		t.Error("a count given back is not free again")
	}
}

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

	"github.com/nixlayer/nixlayer/daemon/protocol"
	"github.com/nixlayer/nixlayer/internal/rpcframe"
)

// FuzzReadRequest: whatever a user sends, decoding a request returns an
// answer or an error, within its bounds.
func FuzzReadRequest(f *testing.F) {
	call := func(method, request string) []byte {
		return rpcframe.Frame([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{"token":"1","request":` + request + `}}`))
	}
	f.Add(call(protocol.MethodBuild, `{"drvPath":"/nix/store/aaaa-x.drv","from":"build"}`))
	f.Add(call(protocol.MethodReadLayerFile, `{"layer":"0123456789ab","path":"/build/x","offset":-1,"length":99999999999}`))
	f.Add(call(protocol.MethodShell, `{"drvPath":"","at":"failed","keep":true}`))
	f.Add(call(protocol.MethodResults, `{"drvs":null}`))
	f.Add(call(protocol.MethodStatus, `null`))
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

package daemon

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdConn is a Unix socket connection that can carry file descriptors
// (SCM_RIGHTS) alongside the JSON-RPC stream: files given to sendFiles
// travel with the next write; files that arrive queue until taken.
type fdConn struct {
	*net.UnixConn

	mu       sync.Mutex
	outgoing []*os.File
	received []*os.File
}

func newFDConn(c *net.UnixConn) *fdConn { return &fdConn{UnixConn: c} }

// maxFiles bounds the descriptors one message may carry.
const maxFiles = 4

func (c *fdConn) Read(b []byte) (int, error) {
	oob := make([]byte, syscall.CmsgSpace(maxFiles*4))
	n, oobn, _, _, err := c.UnixConn.ReadMsgUnix(b, oob)
	if oobn > 0 {
		c.keep(oob[:oobn])
	}
	if n < 0 { // the system call failed: err says why
		n = 0
	}
	if n == 0 && err == nil {
		err = io.EOF // the peer closed the connection
	}
	return n, err
}

func (c *fdConn) keep(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			c.received = append(c.received, os.NewFile(uintptr(fd), "passed-fd"))
		}
	}
}

// takeFile returns the oldest descriptor received and not yet taken.
func (c *fdConn) takeFile() (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.received) == 0 {
		return nil, fmt.Errorf("the request needs a file passed with it (SCM_RIGHTS: a shell's terminal, an export's pipe), and none came")
	}
	f := c.received[0]
	c.received = c.received[1:]
	return f, nil
}

// sendFiles attaches files to the next write on the connection.
func (c *fdConn) sendFiles(files ...*os.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outgoing = append(c.outgoing, files...)
}

func (c *fdConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	files := c.outgoing
	c.outgoing = nil
	c.mu.Unlock()
	if len(files) == 0 {
		return c.UnixConn.Write(b)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	n, _, err := c.UnixConn.WriteMsgUnix(b, syscall.UnixRights(fds...), nil)
	if err == nil && n < len(b) {
		m, err := c.UnixConn.Write(b[n:])
		return n + m, err
	}
	return n, err
}

// Close closes the connection and any descriptor nobody took.
func (c *fdConn) Close() error {
	c.mu.Lock()
	for _, f := range c.received {
		f.Close()
	}
	c.received = nil
	c.mu.Unlock()
	return c.UnixConn.Close()
}

// peer is who is at the other end of a connection.
type peer struct {
	UID, GID, PID int
}

// peerCredentials reads the connecting process's credentials from the
// kernel (SO_PEERCRED), which the peer cannot forge.
func peerCredentials(c *net.UnixConn) (peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if credErr != nil {
		return peer{}, fmt.Errorf("reading the peer's credentials: %w", credErr)
	}
	return peer{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}, nil
}

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
// travel with the next write. On the daemon's side at most one descriptor
// that came is held at a time, and only for a user Nix allows
// (allowFiles): the requests that carry one (a shell's terminal, an
// export's pipe) take it, every other request closes it, and any other
// descriptor is closed as soon as it arrives, so no user can make the
// daemon hold descriptors.
type fdConn struct {
	*net.UnixConn

	mu       sync.Mutex
	outgoing []*os.File
	received *os.File // the descriptor held for the next request
	allowed  bool     // descriptors may be held (an allowed user's)
	dropped  int      // descriptors closed on arrival
}

func newFDConn(c *net.UnixConn) *fdConn { return &fdConn{UnixConn: c} }

// allowFiles lets the connection hold one descriptor for its next request.
func (c *fdConn) allowFiles() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed = true
}

// oobSpace is room for the control message of one descriptor and a few
// more: the kernel closes those that do not fit (MSG_CTRUNC), and keep
// closes the ones that do beyond the first.
var oobSpace = syscall.CmsgSpace(4 * 4)

func (c *fdConn) Read(b []byte) (int, error) {
	oob := make([]byte, oobSpace)
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
			if !c.allowed || c.received != nil {
				syscall.Close(fd)
				c.dropped++
				continue
			}
			syscall.CloseOnExec(fd)
			c.received = os.NewFile(uintptr(fd), "passed-fd")
		}
	}
}

// takeFile returns the descriptor that came before the request.
func (c *fdConn) takeFile() (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.received == nil {
		return nil, fmt.Errorf("the request needs a file passed with it (SCM_RIGHTS: a shell's terminal, an export's pipe), and none came")
	}
	f := c.received
	c.received = nil
	return f, nil
}

// dropFile closes a descriptor that came with a request that takes none.
func (c *fdConn) dropFile() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.received != nil {
		c.received.Close()
		c.received = nil
		c.dropped++
	}
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

// droppedFiles counts the descriptors closed without use.
func (c *fdConn) droppedFiles() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Close closes the connection and a descriptor nobody took.
func (c *fdConn) Close() error {
	c.dropFile()
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

package protocol

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// FDConn is a Unix socket connection that can carry file descriptors
// (SCM_RIGHTS) alongside the JSON-RPC stream: files given to SendFiles
// travel with the next write. On the daemon's side at most one descriptor
// that came is held at a time, and only for a user Nix allows
// (AllowFiles): the requests that carry one (a shell's terminal, an
// export's pipe) take it, every other request closes it, and any other
// descriptor is closed as soon as it arrives, so no user can make the
// daemon hold descriptors.
type FDConn struct {
	*net.UnixConn

	mu       sync.Mutex
	outgoing []*os.File
	received *os.File // the descriptor held for the next request
	allowed  bool     // descriptors may be held (an allowed user's)
	dropped  int      // descriptors closed on arrival
}

// NewFDConn wraps c; it holds no descriptor until AllowFiles.
func NewFDConn(c *net.UnixConn) *FDConn { return &FDConn{UnixConn: c} }

// AllowFiles lets the connection hold one descriptor for its next request.
func (c *FDConn) AllowFiles() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed = true
}

// oobSpace is room for the control message of one descriptor and a few
// more: the kernel closes those that do not fit (MSG_CTRUNC), and keep
// closes the ones that do beyond the first.
var oobSpace = syscall.CmsgSpace(4 * 4)

func (c *FDConn) Read(b []byte) (int, error) {
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

func (c *FDConn) keep(oob []byte) {
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

// TakeFile returns the descriptor that came before the request.
func (c *FDConn) TakeFile() (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.received == nil {
		return nil, fmt.Errorf("the request needs a file passed with it (SCM_RIGHTS: a shell's terminal, an export's pipe), and none came")
	}
	f := c.received
	c.received = nil
	return f, nil
}

// DropFile closes a descriptor that came with a request that takes none.
func (c *FDConn) DropFile() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.received != nil {
		c.received.Close()
		c.received = nil
		c.dropped++
	}
}

// SendFiles attaches files to the next write on the connection.
func (c *FDConn) SendFiles(files ...*os.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outgoing = append(c.outgoing, files...)
}

func (c *FDConn) Write(b []byte) (int, error) {
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

// DroppedFiles counts the descriptors closed without use.
func (c *FDConn) DroppedFiles() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Close closes the connection and a descriptor nobody took.
func (c *FDConn) Close() error {
	c.DropFile()
	return c.UnixConn.Close()
}

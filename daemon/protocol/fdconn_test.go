package protocol

import (
	"net"
	"os"
	"syscall"
	"testing"
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
// then only one is held at a time; DropFile closes it.
func TestDescriptorsNotHeld(t *testing.T) {
	a, b := socketPair(t)
	fc := NewFDConn(b)
	buf := make([]byte, 16)
	for range 3 {
		sendFDs(t, a, 3)
		if _, err := fc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if fc.received != nil || fc.DroppedFiles() != 9 {
		t.Fatalf("before the access check: held %v, closed %d of 9", fc.received, fc.DroppedFiles())
	}
	fc.AllowFiles()
	sendFDs(t, a, 3)
	sendFDs(t, a, 1)
	for read := 0; read < 2; {
		n, err := fc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		read += n
	}
	if fc.received == nil || fc.DroppedFiles() != 12 {
		t.Fatalf("allowed: held %v, closed %d of 12", fc.received, fc.DroppedFiles())
	}
	fc.DropFile()
	if _, err := fc.TakeFile(); err == nil || fc.DroppedFiles() != 13 {
		t.Fatalf("a dropped descriptor was taken (closed %d)", fc.DroppedFiles())
	}
}

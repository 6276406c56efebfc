package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listen returns the socket systemd passed (socket activation,
// nixlayer-daemon.socket) or listens on path itself: its directory is
// created, a stale socket replaced, and the socket is open to everyone
// (who may use it is decided per connection from Nix's settings).
func Listen(path string) (net.Listener, error) {
	if ls, err := activation.Listeners(); err == nil && len(ls) > 0 && ls[0] != nil {
		return ls[0], nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("a nixlayer daemon already listens on %s", path)
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(path) // left by a daemon that died
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// DefaultSocket is where the daemon listens unless told otherwise
// ($NIXLAYER_DAEMON_SOCKET, --socket).
const DefaultSocket = "/run/nixlayer/daemon.sock"

// SocketPath is the socket clients use.
func SocketPath() string {
	if s := os.Getenv("NIXLAYER_DAEMON_SOCKET"); s != "" {
		return s
	}
	return DefaultSocket
}

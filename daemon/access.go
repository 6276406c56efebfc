package daemon

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixlayer/nixlayer/nixstore"
)

// access is what Nix's settings let a user do with the daemon.
type access struct {
	User    string
	Allowed bool
	Trusted bool
}

// nixUsers are Nix's allowed-users and trusted-users, as Nix reads them.
type nixUsers struct {
	Allowed, Trusted []string
}

// readNixUsers asks Nix for allowed-users and trusted-users (nix.conf with
// its includes, $NIX_CONF_DIR, $NIX_CONFIG: what nix-daemon itself reads).
func readNixUsers(ctx context.Context) (nixUsers, error) {
	u := nixUsers{Allowed: []string{"*"}, Trusted: []string{"root"}} // Nix's defaults
	if _, err := nixstore.NixSetting(ctx, "allowed-users", &u.Allowed); err != nil {
		return u, err
	}
	if _, err := nixstore.NixSetting(ctx, "trusted-users", &u.Trusted); err != nil {
		return u, err
	}
	return u, nil
}

// accessOf decides for a peer as nix-daemon does: a list matches "*", the
// user's name, or "@group" where group is the peer's group or one the user
// is a member of. A trusted user is always allowed.
func (n nixUsers) accessOf(p peer) access {
	name := strconv.Itoa(p.UID)
	var groups []string
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := user.LookupGroupId(id); err == nil {
					groups = append(groups, g.Name)
				}
			}
		}
	}
	if g, err := user.LookupGroupId(strconv.Itoa(p.GID)); err == nil {
		groups = append(groups, g.Name)
	}
	a := access{User: name, Trusted: matchUser(name, groups, n.Trusted)}
	a.Allowed = a.Trusted || matchUser(name, groups, n.Allowed)
	return a
}

func matchUser(name string, groups, list []string) bool {
	for _, e := range list {
		switch {
		case e == "*" || e == name:
			return true
		case strings.HasPrefix(e, "@"):
			for _, g := range groups {
				if g == e[1:] {
					return true
				}
			}
		}
	}
	return false
}

// refusal is the one message a user outside allowed-users gets.
func (n nixUsers) refusal(a access) string {
	return fmt.Sprintf("user '%s' is not allowed to use the nixlayer daemon: Nix's allowed-users is %q (nix.conf); ask root to add the user or one of its groups (@group)", a.User, strings.Join(n.Allowed, " "))
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

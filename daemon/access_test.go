package daemon

import (
	"os"
	"os/user"
	"testing"
)

// Membership follows nix-daemon's matchUser: "*", the name, "@group".
func TestMatchUser(t *testing.T) {
	cases := []struct {
		list   []string
		groups []string
		want   bool
	}{
		{[]string{"*"}, nil, true},
		{[]string{"alice"}, nil, true},
		{[]string{"bob"}, []string{"alice"}, false},
		{[]string{"@wheel"}, []string{"users", "wheel"}, true},
		{[]string{"@wheel"}, []string{"users"}, false},
		{[]string{"wheel"}, []string{"wheel"}, false}, // a group needs its @
		{nil, []string{"wheel"}, false},
	}
	for _, c := range cases {
		if got := matchUser("alice", c.groups, c.list); got != c.want {
			t.Errorf("matchUser(alice, %v, %v) = %v, want %v", c.groups, c.list, got, c.want)
		}
	}
}

// A real user of this machine: trusted implies allowed; its primary group
// counts as @group.
func TestAccessOf(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	g, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Skip(err)
	}
	p := peer{UID: os.Getuid(), GID: os.Getgid()}
	if a := (nixUsers{Allowed: []string{"nobody-else"}, Trusted: []string{me.Username}}).accessOf(p); !a.Allowed || !a.Trusted {
		t.Errorf("trusted user not allowed: %+v", a)
	}
	if a := (nixUsers{Allowed: []string{"@" + g.Name}}).accessOf(p); !a.Allowed || a.Trusted {
		t.Errorf("@%s: %+v", g.Name, a)
	}
	n := nixUsers{Allowed: []string{"nobody-else"}}
	if a := n.accessOf(p); a.Allowed {
		t.Errorf("allowed although not listed: %+v", a)
	} else if msg := n.refusal(a); msg == "" {
		t.Error("no refusal message")
	}
}

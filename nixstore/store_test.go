package nixstore

import (
	"strings"
	"testing"
)

func TestSplitStorePath(t *testing.T) {
	t.Setenv("NIX_STORE_DIR", "")
	const h = "0c6kzph7l0dcbfmjap64f0czdafn3b7x"
	for _, c := range []struct {
		path, hash, name string
		isStorePath      bool
	}{
		{"/nix/store/" + h + "-hello-2.12.1", h, "hello-2.12.1", true},
		{"/nix/store/" + h + "-hello-2.12.1.drv", h, "hello-2.12.1.drv", true},
		{"/nix/store/" + h + "-hello/bin/hello", "", "", false}, // base name "hello"
		{"/nix/store/" + h + "-hello/", h, "hello", true},
		{"/tmp/" + h + "-hello", h, "hello", false}, // a store path's base name outside the store
		{"drv-" + h + "-x.drv.lock", "", "", false},
		{h + "-x.drv", h, "x.drv", false},
		{"/nix/store/" + h + "-", "", "", false},                         // empty name
		{"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", "", "", false}, // e is not nixbase32
		{"/nix/store/" + h + "-a b", "", "", false},                      // space in the name
		{"/nix/store/" + h[:31] + "-x", "", "", false},                   // short hash
		{"/nix/store", "", "", false},
	} {
		hash, name, ok := SplitStorePath(c.path)
		if hash != c.hash || name != c.name || ok != (c.hash != "") {
			t.Errorf("SplitStorePath(%q) = %q, %q, %v; want %q, %q", c.path, hash, name, ok, c.hash, c.name)
		}
		if got := HashPart(c.path); got != c.hash {
			t.Errorf("HashPart(%q) = %q, want %q", c.path, got, c.hash)
		}
		if got := IsStorePath(c.path); got != c.isStorePath {
			t.Errorf("IsStorePath(%q) = %v, want %v", c.path, got, c.isStorePath)
		}
	}
}

func TestTargetArgv(t *testing.T) {
	args := map[string]string{"n": "20", "a": "{}"}
	strs := map[string]string{"salt": "x"}
	for _, c := range []struct {
		t        Target
		fileFlag string
		want     string
	}{
		{Target{File: "/p/default.nix", Attr: "hello", Args: args, ArgStrs: strs}, "",
			"/p/default.nix -A hello --arg a {} --arg n 20 --argstr salt x"},
		{Target{File: "/p/default.nix", Attr: "hello"}, "-f", "-f /p/default.nix -A hello"},
		{Target{File: "/p/default.nix", Expr: "import ./x.nix"}, "-f", "-E import ./x.nix"},
		{Target{File: "/p/x.nix", Source: []byte("{}")}, "", "- "},
	} {
		if got := strings.Join(c.t.Argv(c.fileFlag), " "); got != strings.TrimSpace(c.want) {
			t.Errorf("%+v.Argv(%q) = %q, want %q", c.t, c.fileFlag, got, c.want)
		}
	}
}

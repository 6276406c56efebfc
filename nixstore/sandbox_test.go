package nixstore

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Sandbox paths are read as Nix reads them; one test per rule.

func TestBindPathTargetAndSource(t *testing.T) {
	src := t.TempDir()
	got, err := ResolveBindPaths([]string{"/opt/tools=" + src, src}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []BindPath{{Target: "/opt/tools", Source: src}, {Target: src, Source: src}}
	if src < "/opt/tools" {
		want[0], want[1] = want[1], want[0]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestBindPathOptional(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	got, err := ResolveBindPaths([]string{"/gone=" + missing + "?", "/here=" + dir + "?"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []BindPath{{Target: "/here", Source: dir, Optional: true}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// Without "?" a missing source fails every Nix build: an error here.
	if _, err := ResolveBindPaths([]string{"/gone=" + missing}, false); err == nil || !strings.Contains(err.Error(), "/gone") {
		t.Errorf("a missing required source: %v", err)
	}
}

func TestBindPathSymlinkSource(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	// Nix before 2.19.5 (2.8 measured) binds what the link points to.
	got, err := ResolveBindPaths([]string{"/tools=" + link}, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []BindPath{{Target: "/tools", Source: real}}; !reflect.DeepEqual(got, want) {
		t.Errorf("old Nix: got %+v, want %+v", got, want)
	}
	// Later Nix copies the symlink itself into the sandbox.
	got, err = ResolveBindPaths([]string{"/tools=" + link}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []BindPath{{Target: "/tools", Source: link, Symlink: "real"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("new Nix: got %+v, want %+v", got, want)
	}
	// A dangling optional link is a missing source.
	os.Remove(real)
	if got, err := ResolveBindPaths([]string{"/tools=" + link + "?"}, false); err != nil || len(got) != 0 {
		t.Errorf("dangling optional link: %+v %v", got, err)
	}
}

// Nix built with a sandbox shell (NixOS) has /bin/sh=<a shell in the
// store> as its default sandbox-paths; nix show-config reports it, and Nix
// adds the shell's closure to the sandbox.
func TestBindPathDefaultShell(t *testing.T) {
	store := t.TempDir()
	t.Setenv("NIX_STORE_DIR", store)
	shellPkg := filepath.Join(store, "0c7lqkhzrqq5iqkd3wq2ibd5b5n7q8b5-busybox-static-1.36")
	os.MkdirAll(filepath.Join(shellPkg, "bin"), 0o755)
	os.WriteFile(filepath.Join(shellPkg, "bin", "busybox"), []byte("#!"), 0o755)
	showConfig := []byte(`{"sandbox-paths":{"description":"…","value":["/bin/sh=` + shellPkg + `/bin/busybox"]},"cores":{"value":4}}`)
	cfg, err := parseNixConfig(showConfig)
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	if err := decodeSetting(cfg, "sandbox-paths", &entries); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveBindPaths(entries, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []BindPath{{Target: "/bin/sh", Source: shellPkg + "/bin/busybox", StorePath: shellPkg}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// A later entry for a target replaces an earlier one; targets are mounted
// parents first; /proc as a source is Nix's own.
func TestBindPathOrderAndOverride(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	got, err := ResolveBindPaths([]string{"/usr/lib/x=" + a, "/usr=" + a, "/usr=" + b, "/proc"}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []BindPath{{Target: "/usr", Source: b}, {Target: "/usr/lib/x", Source: a}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

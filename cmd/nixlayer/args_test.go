package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"/p/x.nix", "-A", "hello", "--arg", "n", "2", "--argstr", "s", "y", "--cache", "/c",
		"--from", "installPhase", "-o", "r", "--strict", "--json", "-Q", "-v", "--exact", "--at", "build", "extra"},
		[]string{"--exact"}, []string{"--at"})
	if err != nil {
		t.Fatal(err)
	}
	tg := c.target
	if tg.File != "/p/x.nix" || tg.Attr != "hello" || tg.Args["n"] != "2" || tg.ArgStrs["s"] != "y" || c.cacheDir != "/c" ||
		c.from != "installPhase" || c.outLink != "r" || !c.strict || !c.json || !c.quiet || !c.verbose || !c.flags["--exact"] ||
		c.value("--at") != "build" || !reflect.DeepEqual(c.extra, []string{"--at", "build", "extra"}) {
		t.Errorf("parseArgs: %+v", c)
	}
	for _, bad := range [][]string{{"-A"}, {"--arg", "n"}, {"-f", "x.nix", "--bogus"}} {
		if _, err := parseArgs(bad, nil, nil); err == nil {
			t.Errorf("parseArgs(%q) accepted", bad)
		}
	}
}

func TestInspectArgs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	def := filepath.Join(dir, "default.nix")
	for _, c := range []struct {
		args   []string
		pos    []string
		hasPkg bool
		file   string
	}{
		{[]string{"/p/x.nix", "installPhase"}, []string{"installPhase"}, true, "/p/x.nix"},
		{[]string{"installPhase", "/p/x.nix"}, []string{"installPhase", "/p/x.nix"}, false, ""},
		{[]string{"--json", "-A", "x", "--at", "configure", "/mnt/a"}, []string{"/mnt/a"}, true, def},
		{[]string{"--keep-last", "2", "--argstr", "-A", "x"}, nil, true, def}, // -A anywhere names the package
		{[]string{"-f", "/p/x.nix", "/p/y.nix"}, []string{"/p/y.nix"}, true, "/p/x.nix"},
	} {
		cm, pos, hasPkg, err := inspectArgs(c.args, []string{"--keep"}, []string{"--at", "--keep-last"})
		if err != nil {
			t.Fatalf("inspectArgs(%q): %v", c.args, err)
		}
		if !reflect.DeepEqual(pos, c.pos) || hasPkg != c.hasPkg || cm.target.File != c.file {
			t.Errorf("inspectArgs(%q) = pos %q, hasPkg %v, file %q; want %q, %v, %q", c.args, pos, hasPkg, cm.target.File, c.pos, c.hasPkg, c.file)
		}
	}
}

// push and pull take the registry first, the package (as nix-build names
// it) after it, flags anywhere.
func TestRegistryRef(t *testing.T) {
	for _, c := range []struct {
		args []string
		ref  string
		rest []string
	}{
		{[]string{"reg:5000/r", "/p/x.nix", "-A", "hello"}, "reg:5000/r", []string{"/p/x.nix", "-A", "hello"}},
		{[]string{"--cache", "/c", "--json", "reg/r:tag", "-A", "x"}, "reg/r:tag", []string{"--cache", "/c", "--json", "-A", "x"}},
		{[]string{"--at", "build", "--arg", "n", "2", "reg/r", "/p"}, "reg/r", []string{"--at", "build", "--arg", "n", "2", "/p"}},
	} {
		ref, rest, err := registryRef(c.args, []string{"--at"}, "usage")
		if err != nil || ref != c.ref || !reflect.DeepEqual(rest, c.rest) {
			t.Errorf("registryRef(%q) = %q %q %v; want %q %q", c.args, ref, rest, err, c.ref, c.rest)
		}
	}
	if _, _, err := registryRef([]string{"--cache", "/c"}, nil, "usage"); err == nil {
		t.Error("no REF accepted")
	}
}

// A flake reference is the package wherever one is named; a directory
// with only a flake.nix, or none named beside one, is the flake.
func TestParseFlakeArgs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	c, err := parseArgs([]string{".#hello", "--override-input", "fixtures", "path:/f", "--impure", "--at", "x"}, nil, []string{"--at"})
	if err != nil {
		t.Fatal(err)
	}
	if tg := c.target; tg.Flake != dir+"#hello" || tg.File != "" || tg.OverrideInputs["fixtures"] != "path:/f" || !tg.Impure || c.value("--at") != "x" {
		t.Errorf("parseArgs(.#hello …) = %+v", tg)
	}
	if _, err := parseArgs(nil, nil, nil); err == nil || !strings.Contains(err.Error(), "flake.nix") {
		t.Errorf("no package, no default.nix or flake.nix: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"."}, {dir}} {
		if c, err := parseArgs(args, nil, nil); err != nil || c.target.Flake != dir || c.target.File != "" {
			t.Errorf("parseArgs(%q) beside a flake.nix = %+v, %v; want the flake %s", args, c.target, err, dir)
		}
	}
	c, pos, hasPkg, err := inspectArgs([]string{"github:o/r#p", "installPhase"}, nil, nil)
	if err != nil || !hasPkg || c.target.Flake != "github:o/r#p" || !reflect.DeepEqual(pos, []string{"installPhase"}) {
		t.Errorf("inspectArgs(github:o/r#p installPhase) = %+v %q %v %v", c.target, pos, hasPkg, err)
	}
	// nix-build's reading wins where both files exist.
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := parseArgs([]string{"."}, nil, nil); err != nil || c.target.File != dir || c.target.Flake != "" {
		t.Errorf("parseArgs(.) beside default.nix and flake.nix = %+v, %v; want the file", c.target, err)
	}
}

// Every command answers --help and -h from the table, without running;
// a flag's value that reads --help is a value.
func TestEveryCommandAnswersHelp(t *testing.T) {
	for _, c := range commands {
		for _, h := range []string{"--help", "-h"} {
			var b strings.Builder
			cmd := findCommand(c.name)
			if !wantsHelp(cmd, []string{"-v", h}) {
				t.Errorf("%s %s: not taken as help", c.name, h)
			}
			printCommandHelp(&b, cmd)
			if !strings.HasPrefix(b.String(), "usage: nixlayer "+c.name) || !strings.Contains(b.String(), "Exit codes:") {
				t.Errorf("%s --help:\n%s", c.name, b.String())
			}
			for _, f := range c.flags {
				if !strings.Contains(b.String(), f.names[0]) {
					t.Errorf("%s --help does not list %s", c.name, f.names[0])
				}
			}
		}
	}
	if wantsHelp(findCommand("build"), []string{"--argstr", "x", "--help"}) {
		t.Error("the value of --argstr taken as --help")
	}
	if c, err := parseCommand("build", []string{"-E", "x", "--progress=json", "--exact"}); err != nil || !c.progressJSON() || !c.flags["--exact"] {
		t.Errorf("build's own flags from the table: %+v, %v", c, err)
	}
	if _, err := parseCommand("plan", []string{"-E", "x", "--exact"}); codeOf(err) != exitUsage {
		t.Errorf("plan --exact: %v (exit %d), want a usage error", err, codeOf(err))
	}
}

package cmdline

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	c, err := Parse([]string{"/p/x.nix", "-A", "hello", "--arg", "n", "2", "--argstr", "s", "y", "--cache", "/c",
		"--from", "installPhase", "-o", "r", "--strict", "--json", "-Q", "-v", "--exact", "--at", "build", "extra"},
		[]string{"--exact"}, []string{"--at"})
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Target
	if tg.File != "/p/x.nix" || tg.Attr != "hello" || tg.Args["n"] != "2" || tg.ArgStrs["s"] != "y" || c.CacheDir != "/c" ||
		c.From != "installPhase" || c.OutLink != "r" || !c.Strict || !c.JSON || !c.Quiet || !c.Verbose || !c.Flags["--exact"] ||
		c.Value("--at") != "build" || !reflect.DeepEqual(c.Extra, []string{"--at", "build", "extra"}) {
		t.Errorf("Parse: %+v", c)
	}
	for _, bad := range [][]string{{"-A"}, {"--arg", "n"}, {"-f", "x.nix", "--bogus"}} {
		if _, err := Parse(bad, nil, nil); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
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
		cm, pos, hasPkg, err := Inspect(c.args, []string{"--keep"}, []string{"--at", "--keep-last"})
		if err != nil {
			t.Fatalf("Inspect(%q): %v", c.args, err)
		}
		if !reflect.DeepEqual(pos, c.pos) || hasPkg != c.hasPkg || cm.Target.File != c.file {
			t.Errorf("Inspect(%q) = pos %q, hasPkg %v, file %q; want %q, %v, %q", c.args, pos, hasPkg, cm.Target.File, c.pos, c.hasPkg, c.file)
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
		ref, rest, err := RegistryRef(c.args, []string{"--at"}, "usage")
		if err != nil || ref != c.ref || !reflect.DeepEqual(rest, c.rest) {
			t.Errorf("RegistryRef(%q) = %q %q %v; want %q %q", c.args, ref, rest, err, c.ref, c.rest)
		}
	}
	if _, _, err := RegistryRef([]string{"--cache", "/c"}, nil, "usage"); err == nil {
		t.Error("no REF accepted")
	}
}

// A flake reference is the package wherever one is named; a directory
// with only a flake.nix, or none named beside one, is the flake.
func TestParseFlakeArgs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	c, err := Parse([]string{".#hello", "--override-input", "fixtures", "path:/f", "--impure", "--at", "x"}, nil, []string{"--at"})
	if err != nil {
		t.Fatal(err)
	}
	if tg := c.Target; tg.Flake != dir+"#hello" || tg.File != "" || tg.OverrideInputs["fixtures"] != "path:/f" || !tg.Impure || c.Value("--at") != "x" {
		t.Errorf("Parse(.#hello …) = %+v", tg)
	}
	if _, err := Parse(nil, nil, nil); err == nil || !strings.Contains(err.Error(), "flake.nix") {
		t.Errorf("no package, no default.nix or flake.nix: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"."}, {dir}} {
		if c, err := Parse(args, nil, nil); err != nil || c.Target.Flake != dir || c.Target.File != "" {
			t.Errorf("Parse(%q) beside a flake.nix = %+v, %v; want the flake %s", args, c.Target, err, dir)
		}
	}
	c, pos, hasPkg, err := Inspect([]string{"github:o/r#p", "installPhase"}, nil, nil)
	if err != nil || !hasPkg || c.Target.Flake != "github:o/r#p" || !reflect.DeepEqual(pos, []string{"installPhase"}) {
		t.Errorf("Inspect(github:o/r#p installPhase) = %+v %q %v %v", c.Target, pos, hasPkg, err)
	}
	// nix-build's reading wins where both files exist.
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := Parse([]string{"."}, nil, nil); err != nil || c.Target.File != dir || c.Target.Flake != "" {
		t.Errorf("Parse(.) beside default.nix and flake.nix = %+v, %v; want the file", c.Target, err)
	}
}

package nixstore

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/nixtest"
)

// writeFixtureFlake writes ../testdata/flake/flake.nix.in, expanded, into
// a new directory and returns it with the fixtures' directory.
func writeFixtureFlake(t *testing.T, s string) (flake, testdata string) {
	t.Helper()
	testdata, err := filepath.Abs("../testdata")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(testdata, "flake", "flake.nix.in"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"TESTDATA": testdata, "SALT": s}
	flake = t.TempDir()
	nixtest.Write(t, filepath.Join(flake, "flake.nix"), os.Expand(string(tmpl), func(k string) string { return vars[k] }), 0o644)
	return flake, testdata
}

// A flake reference evaluates through Nix with nix build's defaults, to
// the derivation nix-build gives for the same package.
func TestInstantiateFlake(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.Offline(t)
	ctx := context.Background()
	s := nixtest.Salt()
	flake, testdata := writeFixtureFlake(t, s)
	fixture := func(attr string) string {
		t.Helper()
		drvs, err := Instantiate(ctx, Target{File: testdata, Attr: attr, Args: map[string]string{"nfiles": "20"}, ArgStrs: map[string]string{"salt": s}})
		if err != nil {
			t.Fatal(err)
		}
		return drvs[0]
	}
	hello, custom := fixture("hello"), fixture("custom")
	for _, c := range []struct {
		t    Target
		want string
	}{
		{Target{Flake: flake + "#hello"}, hello},                       // packages.<system>.hello
		{Target{Flake: flake}, hello},                                  // packages.<system>.default
		{Target{Flake: "path:" + flake + "#custom"}, custom},           // legacyPackages.<system>.custom
		{Target{Flake: flake + "#impure", Impure: true}, hello},        // reads /bin/bash-static
		{Target{Flake: flake + "#packages.x86_64-linux.hello"}, hello}, // a full attribute path
	} {
		drvs, err := Instantiate(ctx, c.t)
		if err != nil {
			t.Fatalf("Instantiate(%+v): %v", c.t, err)
		}
		if !reflect.DeepEqual(drvs, []string{c.want}) {
			t.Errorf("Instantiate(%+v) = %q, want %q", c.t, drvs, c.want)
		}
	}
	// --override-input reaches Nix: other fixtures, another derivation.
	other := t.TempDir()
	nixtest.Out(t, "cp", "-r", testdata+"/.", other)
	setup := filepath.Join(other, "stdenv", "setup")
	nixtest.Write(t, setup, nixtest.Out(t, "cat", setup)+"\n# other\n", 0o644)
	drvs, err := Instantiate(ctx, Target{Flake: flake + "#hello", OverrideInputs: map[string]string{"fixtures": "path:" + other}})
	if err != nil || len(drvs) != 1 || drvs[0] == hello {
		t.Errorf("Instantiate with --override-input fixtures = %q, %v; want a derivation other than %s", drvs, err, hello)
	}
	for _, c := range []struct {
		t    Target
		want string
	}{
		{Target{Flake: flake + "#impure"}, "pure eval"},
		{Target{Flake: flake + "#nope"}, "nope"},
		{Target{Flake: flake + "#hello", Attr: "hello"}, "names its package after #"},
		{Target{Flake: flake + "#hello", Args: map[string]string{"n": "1"}}, "--arg and --argstr apply to Nix files"},
		{Target{File: testdata, Attr: "hello", Impure: true}, "apply to flake references"},
	} {
		if _, err := Instantiate(ctx, c.t); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Instantiate(%+v) = %v, want an error with %q", c.t, err, c.want)
		}
	}
}

// Completion lists packages.<system>, or legacyPackages.<system> without
// it, and writes no lock file.
func TestFlakePackages(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.Offline(t)
	ctx := context.Background()
	flake, _ := writeFixtureFlake(t, nixtest.Salt())
	names, err := FlakePackages(ctx, flake)
	if want := []string{"default", "failing", "hello", "multi"}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("FlakePackages = %q, %v; want %q", names, err, want)
	}
	if _, err := os.Stat(filepath.Join(flake, "flake.lock")); err == nil {
		t.Error("FlakePackages wrote flake.lock")
	}
	text := nixtest.Out(t, "cat", filepath.Join(flake, "flake.nix"))
	nixtest.Write(t, filepath.Join(flake, "flake.nix"), strings.Replace(text, "packages.x86_64-linux = {", "unused = {", 1), 0o644)
	names, err = FlakePackages(ctx, flake)
	if want := []string{"custom", "impure"}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("FlakePackages without packages = %q, %v; want %q", names, err, want)
	}
}

// -A completion: the names of the file's attribute set (its function
// called with no arguments), and below a dotted path.
func TestFileAttrs(t *testing.T) {
	nixtest.NeedNix(t)
	ctx := context.Background()
	testdata, err := filepath.Abs("../testdata/default.nix")
	if err != nil {
		t.Fatal(err)
	}
	top, err := FileAttrs(ctx, testdata, "")
	if err != nil || !slices.Contains(top, "hello") || !slices.Contains(top, "multi") {
		t.Errorf("FileAttrs(testdata) = %q, %v", top, err)
	}
	below, err := FileAttrs(ctx, testdata, "multi")
	if err != nil || !slices.Contains(below, "dev") || slices.Contains(below, "hello") {
		t.Errorf("FileAttrs(testdata, multi) = %q, %v", below, err)
	}
	if _, err := FileAttrs(ctx, testdata, "nosuch"); err == nil {
		t.Error("FileAttrs below a missing attribute succeeded")
	}
}

func TestFlakeRefs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	nixtest.Write(t, filepath.Join(dir, "a#b.nix"), "{}", 0o644)
	for ref, want := range map[string]bool{
		".#hello": true, "path:/src#x": true, "github:owner/repo": true, "git+https://h/r": true,
		"./default.nix": false, "hello.nix": false, "/p/x.drv": false, "a#b.nix": false, // an existing file wins
	} {
		if got := IsFlakeRef(ref); got != want {
			t.Errorf("IsFlakeRef(%q) = %v, want %v", ref, got, want)
		}
	}
	for ref, want := range map[string]string{
		".#hello": dir + "#hello", "sub#x": dir + "/sub#x", ".": dir,
		"path:./x#y": "path:./x#y", "github:o/r#p": "github:o/r#p",
	} {
		if got := AbsFlakeRef(ref); got != want {
			t.Errorf("AbsFlakeRef(%q) = %q, want %q", ref, got, want)
		}
	}
}

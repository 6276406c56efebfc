package nixstore

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/nixtest"
)

// The packages of a flake, with the files of the flake that define them:
// hello.nix's call builds hello and hello-loud (and default, hello
// again); multi comes from an input, no file of the flake. Neither looking
// nor instantiating with KeepLockFile writes flake.lock.
func TestFlakePackageFiles(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.Offline(t)
	testdata, err := filepath.Abs("../testdata")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(testdata, "flake-local")
	tmpl, err := os.ReadFile(filepath.Join(src, "flake.nix.in"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"TESTDATA": testdata, "SALT": nixtest.Salt()}
	nixtest.Write(t, filepath.Join(dir, "flake.nix"), os.Expand(string(tmpl), func(k string) string { return vars[k] }), 0o644)
	nixtest.Write(t, filepath.Join(dir, "hello.nix"), nixtest.Out(t, "cat", filepath.Join(src, "hello.nix")), 0o644)

	pkgs, err := FlakePackageFiles(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var attrs []string
	files := map[string][]string{}
	drvs := map[string]string{}
	for _, p := range pkgs {
		attrs = append(attrs, p.Attr)
		files[p.Attr], drvs[p.Attr] = p.Files, p.DrvPath
	}
	sys := "packages.x86_64-linux."
	if want := []string{sys + "default", sys + "hello", sys + "hello-loud", sys + "multi"}; !reflect.DeepEqual(attrs, want) {
		t.Fatalf("packages %q, want %q", attrs, want)
	}
	hello := []string{filepath.Join(dir, "hello.nix")}
	for _, name := range []string{"default", "hello", "hello-loud"} {
		if !reflect.DeepEqual(files[sys+name], hello) {
			t.Errorf("%s is defined in %q, want %q", name, files[sys+name], hello)
		}
	}
	if len(files[sys+"multi"]) != 0 {
		t.Errorf("multi is defined in %q, want no file of the flake", files[sys+"multi"])
	}
	if drvs[sys+"default"] != drvs[sys+"hello"] || drvs[sys+"hello"] == drvs[sys+"hello-loud"] || !strings.HasSuffix(drvs[sys+"hello"], ".drv") {
		t.Errorf("derivations %v", drvs)
	}
	// An editor instantiates a package without writing the lock file either.
	got, err := Instantiate(context.Background(), Target{Flake: dir + "#hello", KeepLockFile: true})
	if err != nil || len(got) != 1 || got[0] != drvs[sys+"hello"] {
		t.Errorf("Instantiate(%s#hello) = %q, %v; want %s", dir, got, err, drvs[sys+"hello"])
	}
	if _, err := os.Stat(filepath.Join(dir, "flake.lock")); err == nil {
		t.Errorf("looking at the flake wrote its lock file")
	}
	if _, err := FlakePackageFiles(context.Background(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "reading the flake") {
		t.Errorf("a directory without flake.nix: %v", err)
	}
}

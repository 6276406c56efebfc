package storetree

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/nixtest"
	"github.com/nixlayer/nixlayer/nixstore"
)

// TestDeliver delivers hand-made trees as the outputs of a real,
// instantiated but never built, two-output derivation that depends on a
// built derivation, and checks Nix accepts the result.
func TestDeliver(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.NeedRoot(t)
	nixtest.Offline(t)
	ctx := context.Background()
	s := nixtest.Salt()
	expr := `let bash = ` + nixtest.BashBuilder + `;
	  dep = derivation { name = "dep-` + s + `"; system = builtins.currentSystem; builder = bash; args = [ "-c" "echo dep > $out" ]; };
	  unused = derivation { name = "unused-` + s + `"; system = builtins.currentSystem; builder = bash; args = [ "-c" "echo u > $out" ]; };
	in derivation { name = "top-` + s + `"; system = builtins.currentSystem; builder = bash; outputs = [ "out" "dev" ];
	  inherit dep unused; args = [ "-c" "exit 1" ]; }`
	drvPath := instantiateExpr(t, expr)
	d, err := drv.Read(drvPath)
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := drv.InputPaths(d)
	if err != nil {
		t.Fatal(err)
	}
	// Output paths of unbuilt derivations can only be substituted, not
	// built: realise the input derivations themselves.
	toRealise := append([]string(nil), d.InputSrcs...)
	for in := range d.InputDrvs {
		toRealise = append(toRealise, in)
	}
	if err := nixstore.Realise(ctx, toRealise...); err != nil {
		t.Fatal(err)
	}
	closure, err := nixstore.Closure(ctx, inputs)
	if err != nil {
		t.Fatal(err)
	}
	var depOut, unusedOut string
	for _, p := range closure {
		switch {
		case strings.HasSuffix(p, "-dep-"+s):
			depOut = p
		case strings.HasSuffix(p, "-unused-"+s):
			unusedOut = p
		}
	}
	if depOut == "" || unusedOut == "" {
		t.Fatalf("closure %q lacks dep or unused", closure)
	}
	out, dev := d.Outputs["out"], d.Outputs["dev"]

	// out refers to dep (inside a big file, across buffer boundaries) and to
	// dev (in a symlink target); dev refers to itself only. unused is in the
	// candidates but not referenced.
	host := t.TempDir()
	outTree, devTree := filepath.Join(host, "out"), filepath.Join(host, "dev")
	pad := strings.Repeat("x", 256<<10-20)
	nixtest.Write(t, filepath.Join(outTree, "bin", "tool"), "#!"+depOut+"/bin/sh\n", 0o4775)
	nixtest.Write(t, filepath.Join(outTree, "share", "big"), pad+depOut+pad, 0o600)
	nixtest.Symlink(t, dev+"/include", filepath.Join(outTree, "include"))
	if err := os.MkdirAll(filepath.Join(outTree, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	nixtest.Write(t, filepath.Join(devTree, "include", "x.h"), "// "+dev+"\n", 0o644)

	// A stale, invalid leftover at an output path must be replaced.
	if err := os.MkdirAll(filepath.Join(out, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(out, 0o555)

	outputs := map[string]string{out: outTree, dev: devTree}
	if err := Deliver(ctx, outputs, drvPath, closure); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("nix-store", "--delete", out, dev).Run() })

	for _, p := range []string{out, dev} {
		if ok, err := nixstore.IsValid(ctx, p); err != nil || !ok {
			t.Fatalf("IsValid(%s) = %v, %v", p, ok, err)
		}
		nixtest.Out(t, "nix-store", "--verify-path", p)
		if got := nixtest.Out(t, "nix-store", "-q", "--deriver", p); got != drvPath {
			t.Errorf("deriver of %s = %s, want %s", p, got, drvPath)
		}
		if _, err := os.Stat(p + ".lock"); !os.IsNotExist(err) {
			t.Errorf("lock file %s.lock left behind", p)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "junk")); !os.IsNotExist(err) {
		t.Errorf("stale leftover %s/junk survived", out)
	}
	refs := func(p string) []string {
		r := strings.Fields(nixtest.Out(t, "nix-store", "-q", "--references", p))
		sort.Strings(r)
		return r
	}
	if got, want := refs(out), sorted(depOut, dev); !reflect.DeepEqual(got, want) {
		t.Errorf("references of out = %q, want %q", got, want)
	}
	if got, want := refs(dev), []string{dev}; !reflect.DeepEqual(got, want) {
		t.Errorf("references of dev = %q, want %q", got, want)
	}
	// Nix re-hashes the contents and finds them consistent.
	cmd := exec.Command("nix-store", "--verify", "--check-contents")
	if b, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(b), out) || strings.Contains(string(b), dev) {
		t.Errorf("nix-store --verify --check-contents: %v\n%s", err, b)
	}
	// Canonical metadata.
	fi, err := os.Lstat(filepath.Join(out, "bin", "tool"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o555 || fi.ModTime().Unix() != 1 {
		t.Errorf("bin/tool: mode %v mtime %v, want -r-xr-xr-x and 1", fi.Mode(), fi.ModTime().Unix())
	}

	// Delivering again is a no-op, even from a different tree.
	if err := Deliver(ctx, map[string]string{out: devTree, dev: devTree}, drvPath, closure); err != nil {
		t.Fatal(err)
	}
	if got := refs(out); !reflect.DeepEqual(got, sorted(depOut, dev)) {
		t.Errorf("second Deliver changed out: references %q", got)
	}

	// A GC root like nix-build's ./result.
	link := filepath.Join(t.TempDir(), "result")
	if err := nixstore.AddGCRoot(ctx, out, link); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != out {
		t.Errorf("result link -> %q, %v; want %s", target, err, out)
	}
	roots := nixtest.Out(t, "nix-store", "--gc", "--print-roots")
	if !strings.Contains(roots, link+" -> "+out) {
		t.Errorf("nix-store --gc --print-roots lacks %s -> %s:\n%s", link, out, roots)
	}
	if err := exec.Command("nix-store", "--delete", out).Run(); err == nil {
		t.Errorf("nix-store --delete %s succeeded despite the GC root", out)
	}
	os.Remove(link)
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

package nixstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/nixtest"
)

func TestInstantiateRealiseClosure(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.Offline(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := nixtest.Salt()
	file := filepath.Join(dir, "default.nix")
	nixtest.Write(t, file, `{ greeting ? "x", n ? 0 }: let bash = `+nixtest.BashBuilder+`; in {
	  pkg = derivation { name = "q-${greeting}-${toString n}-`+s+`"; system = builtins.currentSystem; builder = bash; outputs = [ "out" "doc" ];
	    args = [ "-c" "echo ${greeting} > $out; echo $out > $doc" ]; };
	}`, 0o644)
	drvs, err := Instantiate(ctx, Target{File: file, Attr: "pkg", Args: map[string]string{"n": "1 + 2"}, ArgStrs: map[string]string{"greeting": "hey"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(drvs) != 1 || !strings.HasSuffix(drvs[0], "-q-hey-3-"+s+".drv") {
		t.Fatalf("Instantiate = %q", drvs)
	}
	// A non-default output still gives the .drv.
	drvs2, err := Instantiate(ctx, Target{File: file, Attr: "pkg.doc", ArgStrs: map[string]string{"greeting": "hey"}, Args: map[string]string{"n": "3"}})
	if err != nil || !reflect.DeepEqual(drvs2, drvs) {
		t.Fatalf("Instantiate pkg.doc = %q, %v; want %q", drvs2, err, drvs)
	}
	// A .drv is passed through.
	same, err := Instantiate(ctx, Target{File: drvs[0]})
	if err != nil || !reflect.DeepEqual(same, drvs) {
		t.Fatalf("Instantiate(.drv) = %q, %v", same, err)
	}
	outs := strings.Fields(nixtest.Out(t, "nix-store", "-q", "--outputs", drvs[0]))
	for _, o := range outs {
		if ok, err := IsValid(ctx, o); err != nil || ok {
			t.Fatalf("IsValid(%s) before the build = %v, %v", o, ok, err)
		}
	}
	var log bytes.Buffer
	if err := Realise(WithLog(ctx, &log), drvs[0]); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "building") {
		t.Errorf("WithLog got no build progress: %q", log.String())
	}
	for _, o := range outs {
		if ok, err := IsValid(ctx, o); err != nil || !ok {
			t.Fatalf("IsValid(%s) after the build = %v, %v", o, ok, err)
		}
	}
	closure, err := Closure(ctx, outs)
	if err != nil {
		t.Fatal(err)
	}
	// doc refers to out; neither refers to bash.
	if !reflect.DeepEqual(closure, sorted(outs...)) {
		t.Errorf("Closure = %q, want %q", closure, outs)
	}
	drvClosure, err := Closure(ctx, drvs)
	if err != nil || len(drvClosure) != 2 { // the .drv and bash
		t.Errorf("Closure(drv) = %q, %v", drvClosure, err)
	}
}

func TestErrors(t *testing.T) {
	nixtest.NeedNix(t)
	ctx := context.Background()
	_, err := Instantiate(ctx, Target{Expr: "1 +"})
	if err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("bad expression: %v", err)
	}
	err = Realise(ctx, "/nix/store/00000000000000000000000000000000-missing.drv")
	if err == nil || !strings.Contains(err.Error(), "00000000000000000000000000000000-missing.drv") {
		t.Errorf("Realise of a missing drv: %v", err)
	}
	if _, err := IsValid(ctx, "/tmp/x"); err == nil {
		t.Errorf("IsValid(/tmp/x) succeeded")
	}
	if ok, err := IsValid(ctx, "/nix/store/00000000000000000000000000000000-missing"); err != nil || ok {
		t.Errorf("IsValid(missing) = %v, %v", ok, err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err = Instantiate(ctx, Target{Expr: "1"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install nix-bin") || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing nix-instantiate: %v", err)
	}
}

func TestSandboxPaths(t *testing.T) {
	nixtest.NeedNix(t)
	ctx := context.Background()
	t.Setenv("NIX_CONFIG", "extra-sandbox-paths = /nixlayer-test=/tmp /nixlayer-opt?")
	got, err := SandboxPaths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sawMapped, sawOpt bool
	for _, b := range got {
		switch {
		case b == BindPath{Target: "/nixlayer-test", Source: "/tmp"}:
			sawMapped = true
		case b.Target == "/nixlayer-opt":
			sawOpt = true
		}
	}
	if !sawMapped || sawOpt {
		t.Errorf("SandboxPaths = %+v; want /tmp at /nixlayer-test and no missing optional /nixlayer-opt", got)
	}
	// The config-file fallback agrees with nix show-config (when Nix's
	// built-in default is empty, as for Debian's nix-bin).
	fromFiles, err := sandboxPathsFromConfig()
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := ResolveBindPaths(fromFiles, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(entries(resolved), entries(got)) {
		t.Logf("config-file fallback %q differs from nix show-config %q (Nix's compiled-in default?)", fromFiles, entries(got))
	}
}

func entries(bs []BindPath) []string {
	var res []string
	for _, b := range bs {
		e := b.Target
		if b.Source != b.Target {
			e += "=" + b.Source
		}
		if b.Optional {
			e += "?"
		}
		res = append(res, e)
	}
	return sorted(res...)
}

func TestSandboxConfigParsing(t *testing.T) {
	dir := t.TempDir()
	nixtest.Write(t, filepath.Join(dir, "nix.conf"), "# comment\nsandbox-paths = /bin /usr=/host/usr # trailing\nbuild-users-group = nixbld\ninclude extra.conf\n!include missing.conf\n", 0o644)
	nixtest.Write(t, filepath.Join(dir, "extra.conf"), "extra-sandbox-paths = /dev/nvidiactl?\n", 0o644)
	t.Setenv("NIX_CONF_DIR", dir)
	t.Setenv("NIX_CONFIG", "extra-sandbox-paths = /a=/b?")
	got, err := sandboxPathsFromConfig()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin", "/usr=/host/usr", "/dev/nvidiactl?", "/a=/b?"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if b := ParseBindPath(got[1]); b != (BindPath{Target: "/usr", Source: "/host/usr"}) {
		t.Errorf("parsed %+v", b)
	}
	if b := ParseBindPath(got[3]); b != (BindPath{Target: "/a", Source: "/b", Optional: true}) {
		t.Errorf("parsed %+v", b)
	}
	if _, err := os.Stat("/etc/nix/nix.conf"); err == nil {
		t.Setenv("NIX_CONF_DIR", "")
		if _, err := sandboxPathsFromConfig(); err != nil {
			t.Errorf("parsing /etc/nix/nix.conf: %v", err)
		}
	}
}

func TestStoreDir(t *testing.T) {
	t.Setenv("NIX_STORE_DIR", "")
	if StoreDir() != "/nix/store" {
		t.Errorf("StoreDir = %s", StoreDir())
	}
	t.Setenv("NIX_STORE_DIR", "/opt/store/")
	if StoreDir() != "/opt/store" {
		t.Errorf("StoreDir with NIX_STORE_DIR = %s", StoreDir())
	}
}

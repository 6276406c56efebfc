package drv

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/derivation"
)

// bashBuilder makes the static bash available as a store path, so the
// derivations work with and without the sandbox.
const bashBuilder = `builtins.path { path = /bin/bash-static; name = "bash"; }`

// instantiate runs nix-instantiate on expr and returns the .drv paths.
func instantiate(t *testing.T, expr string) []string {
	t.Helper()
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Skip("nix-instantiate not installed (apt-get install nix-bin)")
	}
	if _, err := os.Stat("/bin/bash-static"); err != nil {
		t.Skip("/bin/bash-static missing (apt-get install bash-static)")
	}
	out, err := exec.Command("nix-instantiate", "--no-gc-warning", "-E", expr).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("nix-instantiate -E %s: %v\n%s", expr, err, stderr)
	}
	return strings.Fields(string(out))
}

// nixQuery runs nix-store -q with args and returns the output lines.
func nixQuery(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", append([]string{"-q"}, args...)...).Output()
	if err != nil {
		t.Fatalf("nix-store -q %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

const exprs = `
let
  bash = ` + bashBuilder + `;
  mk = attrs: derivation ({ system = builtins.currentSystem; builder = bash; } // attrs);
  dep = mk { name = "dep"; outputs = [ "out" "dev" "lib" ]; args = [ "-c" "echo > $out; echo > $dev; echo > $lib" ]; };
  fixed = mk { name = "fixed"; args = [ "-c" "echo -n hi > $out" ];
    outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"; };
  src = builtins.toFile "src.txt" "hello";
in {
  top = mk { name = "top"; args = [ "-c" "echo \"$dep $dev\" > $out" ];
    dep = dep; dev = dep.dev; src = src;
    weird = "tab\there\nnewline \"quoted\" back\\slash"; };
  sa = mk { name = "sa"; __structuredAttrs = true; args = [ "-c" "echo > $out" ]; list = [ 1 2 ]; };
  inherit fixed dep;
}
`

func TestReadRealDerivations(t *testing.T) {
	for _, attr := range []string{"top", "sa", "fixed", "dep"} {
		t.Run(attr, func(t *testing.T) {
			p := instantiate(t, "("+exprs+")."+attr)[0]
			d, err := Read(p)
			if err != nil {
				t.Fatal(err)
			}
			if d.Path != p {
				t.Errorf("Path = %q, want %q", d.Path, p)
			}
			if d.Name != attr {
				t.Errorf("Name = %q, want %q", d.Name, attr)
			}
			if d.System == "" {
				t.Errorf("System = %q", d.System)
			}
			if !strings.HasPrefix(d.Builder, "/nix/store/") || !strings.HasSuffix(d.Builder, "-bash") {
				t.Errorf("Builder = %q", d.Builder)
			}
			if len(d.Args) != 2 || d.Args[0] != "-c" {
				t.Errorf("Args = %q", d.Args)
			}
			// Output paths agree with Nix.
			want := nixQuery(t, "--outputs", p)
			if got := d.OutputPaths(); !reflect.DeepEqual(got, sortedCopy(want)) {
				t.Errorf("OutputPaths = %q, nix says %q", got, want)
			}
			if got, want := d.StructuredAttrs(), attr == "sa"; got != want {
				t.Errorf("StructuredAttrs = %v, want %v", got, want)
			}
			if got, want := d.IsFixedOutput(), attr == "fixed"; got != want {
				t.Errorf("IsFixedOutput = %v, want %v", got, want)
			}
			// The build inputs agree with Nix's view of the .drv's references
			// (input drvs + input sources).
			refs := nixQuery(t, "--references", p)
			var wantRefs []string
			wantRefs = append(wantRefs, d.InputSrcs...)
			for in := range d.InputDrvs {
				wantRefs = append(wantRefs, in)
			}
			if !reflect.DeepEqual(sortedCopy(refs), sortedCopy(wantRefs)) {
				t.Errorf("inputs %q, nix-store -q --references says %q", wantRefs, refs)
			}
		})
	}
}

func TestDetails(t *testing.T) {
	p := instantiate(t, "("+exprs+").top")[0]
	d, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Env["weird"], "tab\there\nnewline \"quoted\" back\\slash"; got != want {
		t.Errorf("escaped env = %q, want %q", got, want)
	}
	if d.Env["out"] != d.Outputs["out"] {
		t.Errorf("env out %q != output %q", d.Env["out"], d.Outputs["out"])
	}
	if len(d.InputDrvs) != 1 {
		t.Fatalf("InputDrvs = %v, want one (dep)", d.InputDrvs)
	}
	var depDrv string
	for k, v := range d.InputDrvs {
		depDrv = k
		if !reflect.DeepEqual(v, []string{"dev", "out"}) {
			t.Errorf("outputs used from dep = %q, want [dev out]", v)
		}
	}
	dep, err := Read(depDrv)
	if err != nil {
		t.Fatal(err)
	}
	if names := slices.Sorted(maps.Keys(dep.Outputs)); !reflect.DeepEqual(names, []string{"dev", "lib", "out"}) {
		t.Errorf("dep outputs = %q", names)
	}
	inputs, err := InputPaths(d)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedCopy(append([]string{dep.Outputs["dev"], dep.Outputs["out"]}, d.InputSrcs...))
	if !reflect.DeepEqual(inputs, want) {
		t.Errorf("InputPaths = %q, want %q", inputs, want)
	}
	for _, p := range inputs {
		if p == dep.Outputs["lib"] {
			t.Errorf("InputPaths includes the unused output lib")
		}
	}
	if len(d.InputSrcs) != 2 { // bash and src.txt
		t.Errorf("InputSrcs = %q, want bash and src.txt", d.InputSrcs)
	}
	sa, err := Read(instantiate(t, "("+exprs+").sa")[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sa.Env["__json"], `"list":[1,2]`) {
		t.Errorf("__json = %q", sa.Env["__json"])
	}
	fixed, err := Read(instantiate(t, "("+exprs+").fixed")[0])
	if err != nil {
		t.Fatal(err)
	}
	if h := fixed.OutputHashes["out"]; h.HashAlgo != "sha256" || h.Hash != "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4" {
		t.Errorf("fixed output hash = %+v", h)
	}
}

func TestParseDoesNotAliasInput(t *testing.T) {
	p := instantiate(t, "("+exprs+").dep")[0]
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(data, p)
	if err != nil {
		t.Fatal(err)
	}
	before := d.Outputs["out"]
	for i := range data {
		data[i] = 'X'
	}
	if d.Outputs["out"] != before {
		t.Errorf("result changed when the input buffer changed")
	}
}

func TestMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"Derive(",
		"not a derivation at all",
		`Derive([("out","/nix/store/short","","")],[],[],"x","/b",[],[("name","x")])`,
		`Derive([("out","/nix/store/00000000000000000000000000000000-x","","")],[],[],"x","/b",[],[])`,
	} {
		_, err := Parse([]byte(in), "/tmp/bad.drv")
		if err == nil {
			t.Errorf("Parse(%q) succeeded", in)
			continue
		}
		if !strings.Contains(err.Error(), "/tmp/bad.drv") {
			t.Errorf("error %q does not name the file", err)
		}
	}
	if _, err := Read("/nonexistent/x.drv"); err == nil || !strings.Contains(err.Error(), "/nonexistent/x.drv") {
		t.Errorf("Read of a missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`Derive([("out","/nix/store/00000000000000000000000000000000-x","","")],[],[],"x","/b",[],[("name","x")])`))
	f.Add([]byte(`Derive([("out","","r:sha256","")],[("/nix/store/00000000000000000000000000000000-x.drv",["out"])],["/nix/store/00000000000000000000000000000000-s"],"x","/b",["-c","a\"b"],[("__json","{}"),("name","x\\n")])`))
	f.Add([]byte("Derive(((((((]]]]"))
	f.Add([]byte(`Derive([("`))
	if _, err := exec.LookPath("nix-instantiate"); err == nil {
		if out, err := exec.Command("nix-instantiate", "--no-gc-warning", "-E", "builtins.attrValues ("+exprs+")").Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				if data, err := os.ReadFile(p); err == nil {
					f.Add(data)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data, "fuzz.drv")
		if err == nil && d == nil {
			t.Fatal("nil derivation without error")
		}
		if err == nil {
			_ = d.OutputPaths()
			_ = d.IsFixedOutput()
			_ = d.StructuredAttrs()
		}
		// The checker's hashing never panics on what parses (inputs it
		// cannot read are an error).
		if err == nil {
			if gd, err := derivation.ReadDerivation(bytes.NewReader(data)); err == nil {
				_ = NewChecker().check(gd, "/nix/store/00000000000000000000000000000000-fuzz.drv")
			}
		}
	})
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c
}

// The checker accepts what Nix wrote and refuses a .drv whose output path
// was edited, or whose contents are not what its store path says.
func TestChecker(t *testing.T) {
	paths := instantiate(t, `with (`+exprs+`); [ top fixed sa ]`)
	c := NewChecker()
	for _, p := range paths {
		if err := c.Check(p); err != nil {
			t.Fatalf("Check(%s): %v", p, err)
		}
	}
	top := paths[0]
	d, err := Read(top)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(top)
	if err != nil {
		t.Fatal(err)
	}
	victim := "/nix/store/00000000000000000000000000000000-victim"
	forged := strings.ReplaceAll(string(data), d.Outputs["out"], victim)
	gd, err := derivation.ReadDerivation(strings.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	if err := NewChecker().checkOutputs(gd, top); err == nil || !strings.Contains(err.Error(), "contents give "+d.Outputs["out"]) {
		t.Errorf("forged output path: got %v, want a refusal naming the real path", err)
	}
	if err := checkDrvPath(gd, top); err == nil || !strings.Contains(err.Error(), "not added to the store as a derivation") {
		t.Errorf("forged contents under the real name: got %v", err)
	}
}

// A device or an oversized file is refused before it is read whole.
func TestReadRefusesDevicesAndHugeFiles(t *testing.T) {
	if _, err := Read("/dev/urandom"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/urandom: %v", err)
	}
	big := t.TempDir() + "/big.drv"
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(big); err == nil || !strings.Contains(err.Error(), "more than a derivation may have") {
		t.Errorf("oversized: %v", err)
	}
}

package nixexpr

import (
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/nixexpr/parser"
)

const helloPackage = `{ stdenv, fetchurl }:
stdenv.mkDerivation rec {
  pname = "hello";
  version = "2.12";
  src = ./src;
  configureFlags = [ "--enable-foo" ];
  postInstall = ''
    mkdir -p $out/share
    echo ${version} > $out/share/v
  '';
  installPhase = "make install";
}
`

// attrSummary renders an attribute compactly for table comparisons.
func attrSummary(a Attribute) string {
	s := a.Name
	if a.Simple {
		s += "!"
	}
	if a.HasString {
		s += "=" + a.String
	}
	return s
}

// derivationCase is a source holding one derivation call and what
// FindDerivations should say of it.
type derivationCase struct {
	name     string
	src      string
	kind     DerivationKind
	drvName  string
	function string
	attrs    []string // attrSummary of each attribute
	diags    bool     // whether diagnostics are expected
}

func (tt derivationCase) check(t *testing.T) {
	t.Helper()
	f := parser.Parse([]byte(tt.src))
	if got := len(f.Diagnostics) > 0; got != tt.diags {
		t.Errorf("diagnostics = %v, want any: %v", f.Diagnostics, tt.diags)
	}
	drvs := FindDerivations(f)
	if len(drvs) != 1 {
		t.Fatalf("found %d derivations, want 1", len(drvs))
	}
	d := drvs[0]
	if d.Kind != tt.kind || d.Name != tt.drvName || f.Text(d.Func) != tt.function {
		t.Errorf("got kind %v name %q func %q, want %v %q %q", d.Kind, d.Name, f.Text(d.Func), tt.kind, tt.drvName, tt.function)
	}
	var got []string
	for _, a := range d.Attributes {
		got = append(got, attrSummary(a))
	}
	if strings.Join(got, "|") != strings.Join(tt.attrs, "|") {
		t.Errorf("attributes\n got %q\nwant %q", got, tt.attrs)
	}
}

func TestFindDerivations(t *testing.T) {
	for _, tt := range []derivationCase{
		{
			name: "hello package", src: helloPackage, kind: KindMkDerivation, drvName: "hello",
			function: "stdenv.mkDerivation",
			attrs:    []string{"pname!=hello", "version!=2.12", "src!", "configureFlags!", "postInstall", "installPhase!=make install"},
		},
		{
			name: "builtin derivation", src: `derivation { name = "x"; builder = "/bin/sh"; system = builtins.currentSystem; }`,
			kind: KindDerivation, drvName: "x", function: "derivation",
			attrs: []string{"name!=x", "builder!=/bin/sh", "system"},
		},
		{
			name: "finalAttrs", src: "mkDerivation (finalAttrs: {\n  pname = \"a\";\n  doCheck = true;\n  meta.description = \"d\";\n})",
			kind: KindMkDerivation, drvName: "a", function: "mkDerivation",
			attrs: []string{"pname!=a", "doCheck!", "meta!=d"},
		},
		{
			name: "any mkDerivation", src: `pkgs.stdenvNoCC.mkDerivation { name = "n-1"; inherit src; inherit (x) a "b"; }`,
			kind: KindMkDerivation, drvName: "n-1", function: "pkgs.stdenvNoCC.mkDerivation",
			attrs: []string{"name!=n-1", "src", "a", "b"},
		},
		{
			name: "overrideAttrs one arg", src: `hello.overrideAttrs (old: { postPatch = old.postPatch or "" + "x"; })`,
			kind: KindOverrideAttrs, function: "hello.overrideAttrs", attrs: []string{"postPatch"},
		},
		{
			name: "overrideAttrs two args", src: `overrideAttrs (finalAttrs: prev: prev // { buildPhase = ''make''; })`,
			kind: KindOverrideAttrs, function: "overrideAttrs", attrs: []string{"buildPhase!=make"},
		},
	} {
		t.Run(tt.name, tt.check)
	}
}

// A buffer being typed into still shows its mkDerivation call with every
// attribute the parser can recover, and diagnostics for what is broken.
func TestFindDerivationsInBrokenBuffers(t *testing.T) {
	for _, tt := range []derivationCase{
		{name: "unclosed brace at end", function: "stdenv.mkDerivation", drvName: "x", src: `stdenv.mkDerivation {
  pname = "x";
  installPhase = "make install";
`, attrs: []string{"pname!=x", "installPhase!=make install"}},
		{name: "unclosed nested brace", src: `mkDerivation {
  env = {
    A = "1";
  installPhase = "i";
  postInstall = "p";
}
`, attrs: []string{"env", "installPhase!=i", "postInstall!=p"}},
		{name: "half-typed string", drvName: "hel", src: `mkDerivation {
  pname = "hel
  version = "1";
  installPhase = "i";
}
`, attrs: []string{"pname!=hel", "version!=1", "installPhase!=i"}},
		{name: "unterminated string at end", drvName: "p", src: `mkDerivation {
  pname = "p";
  installPhase = "make
}
`, attrs: []string{"pname!=p", "installPhase!=make"}},
		{name: "unterminated indented string mid-file", src: `mkDerivation {
  postInstall = ''
    mkdir $out
  installPhase = "i";
}
`, attrs: []string{"postInstall!=mkdir $out", "installPhase!=i"}},
		{name: "missing semicolon", drvName: "p", src: `mkDerivation {
  pname = "p"
  buildInputs = [ a b
  installPhase = "i"
}
`, attrs: []string{"pname!=p", "buildInputs", "installPhase!=i"}},
		{name: "garbage line", drvName: "p", src: `mkDerivation {
  pname = "p";
  ) ] = ;
  installPhase = "i";
}
`, attrs: []string{"pname!=p", "installPhase!=i"}},
		{name: "half-typed name", drvName: "p", src: `mkDerivation {
  pname = "p";
  instal
  installPhase = "i";
}
`, attrs: []string{"pname!=p", "installPhase!=i"}},
	} {
		tt.kind, tt.diags = KindMkDerivation, true
		if tt.function == "" {
			tt.function = "mkDerivation"
		}
		t.Run(tt.name, tt.check)
	}
}

func TestAttributeSpans(t *testing.T) {
	f := parser.Parse([]byte(helloPackage))
	d := FindDerivations(f)[0]
	if got := f.Text(d.Call); !strings.HasPrefix(got, "stdenv.mkDerivation rec {") || !strings.HasSuffix(got, "}") {
		t.Errorf("call text = %q", got)
	}
	a, ok := d.Attr("postInstall")
	if !ok {
		t.Fatal("postInstall not found")
	}
	if f.Text(a.Key) != "postInstall" {
		t.Errorf("key text = %q", f.Text(a.Key))
	}
	if !strings.HasPrefix(a.Text, "''") || !strings.HasSuffix(a.Text, "''") || a.Text != f.Text(a.Value) {
		t.Errorf("value text = %q", a.Text)
	}
	if p := f.Position(a.Key.Start); p.Line != 6 || p.Column != 2 {
		t.Errorf("postInstall at %+v, want line 6 column 2", p)
	}
}

func TestNestedAndMultipleDerivations(t *testing.T) {
	src := `{
  a = stdenv.mkDerivation { pname = "a"; passthru.b = mkDerivation { name = "b"; }; };
  c = a.overrideAttrs { postFixup = "x"; };
  d = callPackage ./d.nix { };
}`
	var names []string
	for _, d := range FindDerivations(parser.Parse([]byte(src))) {
		names = append(names, d.Kind.String()+":"+d.Name)
	}
	want := "mkDerivation:a mkDerivation:b overrideAttrs:"
	if strings.Join(names, " ") != want {
		t.Errorf("got %q, want %q", names, want)
	}
}

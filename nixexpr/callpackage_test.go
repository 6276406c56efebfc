package nixexpr

import (
	"reflect"
	"testing"
)

func TestFindCallPackages(t *testing.T) {
	src := `{ lib }: self: with self; {
  hello = callPackage ../by-name/he/hello/package.nix { };
  greeter = callPackage ../tools/greeter { greeting = "hi"; };
  dynamic = callPackage (./x + "/y") { };
  "quoted" = pkgs.callPackage ./q.nix {};
  nested = {
    inner = callPackage ./inner.nix { };
  };
  notACall = import ./z.nix;
  ${"dyn"} = callPackage ./d.nix { };
}
`
	got := FindCallPackages(Parse([]byte(src)))
	want := []CallPackage{
		{Attr: "hello", Path: "../by-name/he/hello/package.nix", Args: "{ }"},
		{Attr: "greeter", Path: "../tools/greeter", Args: `{ greeting = "hi"; }`},
		{Attr: "quoted", Path: "./q.nix", Args: "{}"},
		{Attr: "nested.inner", Path: "./inner.nix", Args: "{ }"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FindCallPackages =\n%+v\nwant\n%+v", got, want)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:      `"/a/b"`,
		`a"b\c`:     `"a\"b\\c"`,
		"${x} $y\n": `"\${x} $y\n"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
		// What Quote renders parses back to the same string.
		f := Parse([]byte(Quote(in)))
		if s, ok := f.Root.(*String); !ok {
			t.Errorf("Quote(%q) does not parse as a string", in)
		} else if lit, _ := s.Literal(); lit != in {
			t.Errorf("Quote(%q) parses back as %q", in, lit)
		}
	}
}

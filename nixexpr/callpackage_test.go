package nixexpr

import (
	"reflect"
	"testing"

	"github.com/nixlayer/nixlayer/nixexpr/parser"
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
	got := FindCallPackages(parser.Parse([]byte(src)))
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

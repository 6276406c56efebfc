package nixexpr

import (
	"testing"

	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		helloPackage, "", "{", `"abc${`, "''\n  a ''${x} '''\n''", "a.b or c ? d",
		"{ a, b ? 1, ... }@args: a", "let a = 1; in a", "x: -x * 2 // { }",
		"<nixpkgs>", "./a/${b}/c", "http://x.org/y", "/* open", `"\`, "inherit",
		"{ a = { b = 1;\n c = 2; }", "rec { a.b.\"c\".${d} = 1; }",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file := parser.Parse(src)
		inside := func(what string, s syntax.Span) {
			if s.Start < 0 || s.End < s.Start || s.End > len(src) {
				t.Fatalf("%s span %v outside input of %d bytes", what, s, len(src))
			}
		}
		for _, d := range file.Diagnostics {
			inside("diagnostic", d.Span)
		}
		syntax.Inspect(file.Root, func(n syntax.Node) bool {
			inside("node", n.Span())
			for _, c := range syntax.Children(n) {
				if c.Span().Start < n.Span().Start || c.Span().End > n.Span().End {
					t.Fatalf("child %T %v escapes parent %T %v", c, c.Span(), n, n.Span())
				}
			}
			return true
		})
		for _, d := range FindDerivations(file) {
			inside("call", d.Call)
			inside("func", d.Func)
			inside("attrs", d.Attrs)
			for _, a := range d.Attributes {
				inside("key", a.Key)
				inside("value", a.Value)
			}
		}
	})
}

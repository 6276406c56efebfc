package syntax_test

import (
	"testing"

	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:      `"/a/b"`,
		`a"b\c`:     `"a\"b\\c"`,
		"${x} $y\n": `"\${x} $y\n"`,
	} {
		if got := syntax.Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
		// What Quote renders parses back to the same string.
		f := parser.Parse([]byte(syntax.Quote(in)))
		if s, ok := f.Root.(*syntax.String); !ok {
			t.Errorf("Quote(%q) does not parse as a string", in)
		} else if lit, _ := s.Literal(); lit != in {
			t.Errorf("Quote(%q) parses back as %q", in, lit)
		}
	}
}

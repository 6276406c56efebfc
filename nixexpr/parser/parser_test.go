package parser

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

// sexpr renders a tree compactly so table tests can state expected structure.
func sexpr(f *syntax.File, n syntax.Node) string {
	switch n := n.(type) {
	case nil:
		return "nil"
	case *syntax.Bad:
		return "BAD"
	case *syntax.Ident:
		return n.Name
	case *syntax.Int:
		return fmt.Sprint(n.Value)
	case *syntax.Float:
		return fmt.Sprint(n.Value)
	case *syntax.String:
		if s, ok := n.Literal(); ok {
			return fmt.Sprintf("%q", s)
		}
		var parts []string
		for _, p := range n.Parts {
			if p.Interp != nil {
				parts = append(parts, "${"+sexpr(f, p.Interp)+"}")
			} else {
				parts = append(parts, fmt.Sprintf("%q", p.Text))
			}
		}
		return "(str " + strings.Join(parts, " ") + ")"
	case *syntax.Path:
		if s, ok := n.Literal(); ok {
			return "path:" + s
		}
		return "(path " + f.Text(n.Loc) + ")"
	case *syntax.SearchPath:
		return "<" + n.Name + ">"
	case *syntax.URI:
		return "uri:" + n.Value
	case *syntax.Paren:
		return sexpr(f, n.Expr)
	case *syntax.AttrPath:
		var names []string
		for _, e := range n.Elems {
			names = append(names, sexpr(f, e))
		}
		return strings.Join(names, ".")
	case *syntax.Interp:
		return "${" + sexpr(f, n.Expr) + "}"
	}
	var parts []string
	for _, c := range syntax.Children(n) {
		parts = append(parts, sexpr(f, c))
	}
	head := fmt.Sprintf("%T", n)[len("*syntax."):]
	switch n := n.(type) {
	case *syntax.Binary:
		head = n.Op
	case *syntax.Unary:
		head = n.Op
	case *syntax.AttrSet:
		if n.Rec {
			head = "rec"
		}
	case *syntax.Formals:
		if n.Ellipsis {
			parts = append(parts, "...")
		}
	}
	return "(" + head + " " + strings.Join(parts, " ") + ")"
}

func TestParse(t *testing.T) {
	tests := []struct{ src, want string }{
		{"1 + 2 * 3", "(+ 1 (* 2 3))"},
		{"a - b - c", "(- (- a b) c)"},
		{"a ++ b ++ c", "(++ a (++ b c))"},
		{"a // b // c", "(// a (// b c))"},
		{"!a && b || c -> d", "(-> (|| (&& (! a) b) c) d)"},
		{"!a + b", "(! (+ a b))"},
		{"-f x ? y", "(HasAttr (- (Apply f x)) y)"},
		{"a == b + 1", "(== a (+ b 1))"},
		{"a < b == true", "(== (< a b) true)"},
		{"f x y", "(Apply (Apply f x) y)"},
		{"f a.b c", "(Apply (Apply f (Select a b)) c)"},
		{"a.b.c or d", "(Select a b.c d)"},
		{`a."b".${c}`, `(Select a "b".${c})`},
		{"x |> f |> g", "(|> (|> x f) g)"},
		{"2.5e3 .5 0 1.", "(Apply (Apply (Apply 2500 0.5) 0) 1)"},
		{"x: y: x", "(Lambda x (Lambda y x))"},
		{"{ a, b ? 1, ... }@args: a", "(Lambda args (Formals a b 1 ...) a)"},
		{"args@{ a }: a", "(Lambda args (Formals a) a)"},
		{"{ }: 1", "(Lambda (Formals ) 1)"},
		{"{ }", "(AttrSet )"},
		{"rec { a = 1; inherit b; inherit (c) d \"e\"; }", `(rec (Attr a 1) (Inherit b) (Inherit c d "e"))`},
		{"{ a.b.c = 1; \"x y\" = 2; ${k} = 3; }", `(AttrSet (Attr a.b.c 1) (Attr "x y" 2) (Attr ${k} 3))`},
		{"let a = 1; b = a; in a + b", "(Let (Attr a 1) (Attr b a) (+ a b))"},
		{"with pkgs; [ hello (f x) ]", "(With pkgs (List hello (Apply f x)))"},
		{"assert a; b", "(Assert a b)"},
		{"if a then b else c", "(If a b c)"},
		{`"a\n\"${b}\"\${c}$${d}"`, `(str "a\n\"" ${b} "\"${c}$${d}")`},
		{"''\n  a\n    b\n''", `"a\n  b\n"`},
		{"''  x\n  y''", `"x\ny"`},
		{"''\n  ''${x} ''' ''\\t $$x\n  ''", `"${x} '' \t $$x\n"`},
		{"''\n  a ${b}\n''", `(str "\n  a " ${b} "\n")`},
		{"./foo/bar.nix", "path:./foo/bar.nix"},
		{"/abs ~/x a/b", "(Apply (Apply path:/abs path:~/x) path:a/b)"},
		{"./a/${b}/c", "(path ./a/${b}/c)"},
		{"<nixpkgs/lib>", "<nixpkgs/lib>"},
		{"https://example.org/a?b=c", "uri:https://example.org/a?b=c"},
		{"a/ b", "(/ a b)"},
		{"a // b", "(// a b)"},
		{"x # comment\n/* block */ + 1", "(+ x 1)"},
		{"foo-bar' or-x", "(Apply foo-bar' or-x)"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			f := Parse([]byte(tt.src))
			if len(f.Diagnostics) > 0 {
				t.Errorf("unexpected diagnostics: %v", f.Diagnostics)
			}
			if got := sexpr(f, f.Root); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseBroken(t *testing.T) {
	tests := []struct {
		src, want string
		messages  []string // substrings of the diagnostics, in order
	}{
		{"{ a = 1;", "(AttrSet (Attr a 1))", []string{"expected }"}},
		{"{ a = 1\n b = 2; }", "(AttrSet (Attr a 1) (Attr b 2))", []string{"expected ;"}},
		{"{ a = ; b = 2; }", "(AttrSet (Attr a BAD) (Attr b 2))", []string{"expected expression"}},
		{"{ a = [ 1 2\n b = 3; }", "(AttrSet (Attr a (List 1 2)) (Attr b 3))", []string{"expected ]"}},
		{`{ a = "x; }`, `(AttrSet (Attr a "x; }"))`, []string{"unterminated string", "expected ;"}},
		{"{ a = x.; }", "(AttrSet (Attr a (Select x BAD)))", []string{"expected attribute name"}},
		{"let a = 1; in", "(Let (Attr a 1) BAD)", []string{"expected expression"}},
		{"if a then b", "(If a b BAD)", []string{"expected else"}},
		{"f (x", "(Apply f x)", []string{"expected )"}},
		{`"${a`, `"${a"`, []string{"unterminated string"}},
		{"''${a", "(str ${a})", []string{"unterminated string", "expected }"}},
		{"a /* x", "a", []string{"unterminated comment"}},
		{"a ) b", "a", []string{"unexpected )", "unexpected identifier"}},
		{"{ a = 1; ] b = 2; }", "(AttrSet (Attr a 1) (Attr b 2))", []string{"unexpected ]"}},
		{"1 + é", "(+ 1 BAD)", []string{"unexpected character"}},
		{"99999999999999999999", "0", []string{"integer out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			f := Parse([]byte(tt.src))
			if got := sexpr(f, f.Root); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			var msgs []string
			for _, d := range f.Diagnostics {
				msgs = append(msgs, d.Message)
			}
			all := strings.Join(msgs, " | ")
			rest := all
			for _, m := range tt.messages {
				i := strings.Index(rest, m)
				if i < 0 {
					t.Errorf("diagnostics %q lack %q (in order)", all, m)
					break
				}
				rest = rest[i+len(m):]
			}
		})
	}
}

func TestDeepNestingDoesNotOverflow(t *testing.T) {
	src := strings.Repeat("(", 100000) + strings.Repeat("[", 100000)
	f := Parse([]byte(src))
	if len(f.Diagnostics) == 0 {
		t.Error("expected diagnostics")
	}
}

// Package syntax is the syntax tree of a Nix source buffer: its nodes, a
// parsed File with its diagnostics, byte spans and line/column positions
// (UTF-16 columns for LSP), and the values of string and path literals
// (escapes, indentation stripping, Quote). The parser builds it; nixexpr
// and the language server read it.
package syntax

// Node is any expression or attribute-name node of the syntax tree.
type Node interface {
	Span() Span
}

// Diagnostic is a syntax error found while lexing or parsing.
type Diagnostic struct {
	Span    Span
	Message string
}

// Bad stands in for an expression that is missing or could not be parsed.
type Bad struct{ Loc Span }

// Ident is a variable reference or, in attribute paths, a plain attribute name.
type Ident struct {
	Loc  Span
	Name string
}

// Int is an integer literal; Value is 0 if it overflows (a diagnostic says so).
type Int struct {
	Loc   Span
	Value int64
}

// Float is a floating point literal.
type Float struct {
	Loc   Span
	Value float64
}

// StringPart is one piece of a string or path: literal text or an interpolation.
type StringPart struct {
	Loc Span
	// Text is the literal with escapes resolved (indentation not yet stripped).
	Text string
	// Escape marks indented-string escapes (''$ ''' ''\n), which Nix leaves
	// out of indentation stripping.
	Escape bool
	// Interp is the ${...} expression, nil for literal text.
	Interp Node
}

// String is a "..." or ”...” string.
type String struct {
	Loc      Span
	Indented bool
	Parts    []StringPart
}

// Path is a path literal such as ./foo, /abs, ~/x or ./a/${b}.
type Path struct {
	Loc   Span
	Parts []StringPart
}

// SearchPath is a <nixpkgs>-style lookup path; Name excludes the brackets.
type SearchPath struct {
	Loc  Span
	Name string
}

// URI is an unquoted URI literal.
type URI struct {
	Loc   Span
	Value string
}

// List is [ a b c ].
type List struct {
	Loc   Span
	Elems []Node
}

// AttrSet is { ... } or rec { ... }.
type AttrSet struct {
	Loc      Span
	Rec      bool
	Bindings []Binding
}

// Binding is an entry of an attribute set or let: *Attr or *Inherit.
type Binding interface {
	Node
	binding()
}

// AttrPath is a dotted attribute path; each element is *Ident, *String or
// *Interp (for ${...}), or *Bad where a name is missing.
type AttrPath struct {
	Loc   Span
	Elems []Node
}

// Attr is `path = value;`.
type Attr struct {
	Loc   Span
	Path  *AttrPath
	Value Node
}

// Inherit is `inherit a b;` or `inherit (from) a b;`. From is nil without parentheses.
type Inherit struct {
	Loc   Span
	From  Node
	Names []Node
}

// Interp is a ${...} used as an attribute name.
type Interp struct {
	Loc  Span
	Expr Node
}

// Let is let bindings in body.
type Let struct {
	Loc      Span
	Bindings []Binding
	Body     Node
}

// With is with env; body.
type With struct {
	Loc       Span
	Env, Body Node
}

// Assert is assert cond; body.
type Assert struct {
	Loc        Span
	Cond, Body Node
}

// If is if cond then a else b.
type If struct {
	Loc              Span
	Cond, Then, Else Node
}

// Formal is one parameter of a set pattern, with an optional default.
type Formal struct {
	Name    *Ident
	Default Node
}

// Formals is a set pattern { a, b ? 1, ... }.
type Formals struct {
	Loc      Span
	Entries  []Formal
	Ellipsis bool
}

// Lambda is `x: body`, `{ ... }: body` or `{ ... }@x: body`; Param and/or
// Formals is set.
type Lambda struct {
	Loc     Span
	Param   *Ident
	Formals *Formals
	Body    Node
}

// Apply is function application `Func Arg`.
type Apply struct {
	Loc       Span
	Func, Arg Node
}

// Select is `expr.path` or `expr.path or default` (Default nil when absent).
type Select struct {
	Loc     Span
	Expr    Node
	Path    *AttrPath
	Default Node
}

// HasAttr is `expr ? path`.
type HasAttr struct {
	Loc  Span
	Expr Node
	Path *AttrPath
}

// Binary is a binary operator application; Op is its spelling, e.g. "//".
type Binary struct {
	Loc         Span
	Op          string
	Left, Right Node
}

// Unary is `!x` or `-x`.
type Unary struct {
	Loc  Span
	Op   string
	Expr Node
}

// Paren is a parenthesized expression, kept so spans match the source.
type Paren struct {
	Loc  Span
	Expr Node
}

func (n *Bad) Span() Span        { return n.Loc }
func (n *Ident) Span() Span      { return n.Loc }
func (n *Int) Span() Span        { return n.Loc }
func (n *Float) Span() Span      { return n.Loc }
func (n *String) Span() Span     { return n.Loc }
func (n *Path) Span() Span       { return n.Loc }
func (n *SearchPath) Span() Span { return n.Loc }
func (n *URI) Span() Span        { return n.Loc }
func (n *List) Span() Span       { return n.Loc }
func (n *AttrSet) Span() Span    { return n.Loc }
func (n *AttrPath) Span() Span   { return n.Loc }
func (n *Attr) Span() Span       { return n.Loc }
func (n *Inherit) Span() Span    { return n.Loc }
func (n *Interp) Span() Span     { return n.Loc }
func (n *Let) Span() Span        { return n.Loc }
func (n *With) Span() Span       { return n.Loc }
func (n *Assert) Span() Span     { return n.Loc }
func (n *If) Span() Span         { return n.Loc }
func (n *Formals) Span() Span    { return n.Loc }
func (n *Lambda) Span() Span     { return n.Loc }
func (n *Apply) Span() Span      { return n.Loc }
func (n *Select) Span() Span     { return n.Loc }
func (n *HasAttr) Span() Span    { return n.Loc }
func (n *Binary) Span() Span     { return n.Loc }
func (n *Unary) Span() Span      { return n.Loc }
func (n *Paren) Span() Span      { return n.Loc }

func (*Attr) binding()    {}
func (*Inherit) binding() {}

// Children returns the direct child nodes of n in source order, for walking the tree.
func Children(n Node) []Node {
	var out []Node
	add := func(ns ...Node) {
		for _, c := range ns {
			if c != nil {
				out = append(out, c)
			}
		}
	}
	addParts := func(parts []StringPart) {
		for _, p := range parts {
			add(p.Interp)
		}
	}
	addBindings := func(bs []Binding) {
		for _, b := range bs {
			add(b)
		}
	}
	switch n := n.(type) {
	case *String:
		addParts(n.Parts)
	case *Path:
		addParts(n.Parts)
	case *List:
		add(n.Elems...)
	case *AttrSet:
		addBindings(n.Bindings)
	case *AttrPath:
		add(n.Elems...)
	case *Attr:
		add(n.Path, n.Value)
	case *Inherit:
		add(n.From)
		add(n.Names...)
	case *Interp:
		add(n.Expr)
	case *Let:
		addBindings(n.Bindings)
		add(n.Body)
	case *With:
		add(n.Env, n.Body)
	case *Assert:
		add(n.Cond, n.Body)
	case *If:
		add(n.Cond, n.Then, n.Else)
	case *Formals:
		for _, f := range n.Entries {
			add(f.Name, f.Default)
		}
	case *Lambda:
		if n.Param != nil {
			add(n.Param)
		}
		if n.Formals != nil {
			add(n.Formals)
		}
		add(n.Body)
	case *Apply:
		add(n.Func, n.Arg)
	case *Select:
		add(n.Expr, n.Path, n.Default)
	case *HasAttr:
		add(n.Expr, n.Path)
	case *Binary:
		add(n.Left, n.Right)
	case *Unary:
		add(n.Expr)
	case *Paren:
		add(n.Expr)
	}
	return out
}

// Inspect walks the tree depth-first in source order, calling visit for each
// node; children are skipped when visit returns false.
func Inspect(n Node, visit func(Node) bool) {
	if n == nil || !visit(n) {
		return
	}
	for _, c := range Children(n) {
		Inspect(c, visit)
	}
}

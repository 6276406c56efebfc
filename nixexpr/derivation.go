// Package nixexpr reads what a Nix file means as a package from its syntax
// tree: the derivation calls with their attributes and positions
// (FindDerivations) and a package set's callPackage bindings
// (FindCallPackages). The language server's lenses, hovers and discovery
// call it on trees the parser built.
package nixexpr

import "github.com/nixlayer/nixlayer/nixexpr/syntax"

// DerivationKind says which call produced a Derivation.
type DerivationKind int

const (
	KindDerivation    DerivationKind = iota // builtin derivation { ... }
	KindMkDerivation                        // mkDerivation / *.mkDerivation
	KindOverrideAttrs                       // overrideAttrs / *.overrideAttrs
)

func (k DerivationKind) String() string {
	switch k {
	case KindDerivation:
		return "derivation"
	case KindMkDerivation:
		return "mkDerivation"
	case KindOverrideAttrs:
		return "overrideAttrs"
	}
	return "unknown"
}

// Derivation is a call that builds or overrides a derivation, with the
// attributes written in its argument set.
type Derivation struct {
	Kind DerivationKind
	// Name is the literal pname (or name) attribute, "" when not a literal.
	Name string
	// Call spans the whole application, e.g. `stdenv.mkDerivation rec { ... }`.
	Call syntax.Span
	// Func spans the function expression, e.g. `stdenv.mkDerivation`.
	Func syntax.Span
	// Attrs spans the attribute set holding Attributes.
	Attrs      syntax.Span
	Attributes []Attribute
}

// Attribute is one binding of a derivation's attribute set.
type Attribute struct {
	// Name is the first element of the attribute path (installPhase in
	// installPhase = ...; passthru in passthru.tests = ...).
	Name string
	// Path holds every element of a dotted path; dynamic elements are "".
	Path []string
	// Key spans the attribute path; Value spans the value expression.
	Key, Value syntax.Span
	// Text is the value's source text.
	Text string
	// Simple is true for literals that need no evaluation: strings without
	// interpolation, numbers, paths, URIs, true/false/null, and lists of those.
	Simple bool
	// String is the value of a string literal without interpolation
	// (indentation stripped for ''...''); HasString says whether it is set.
	String    string
	HasString bool
	// Inherited marks `inherit name;` / `inherit (x) name;`; Value is then the name's span.
	Inherited bool
}

// Attr returns the first attribute with the given name.
func (d *Derivation) Attr(name string) (Attribute, bool) {
	for _, a := range d.Attributes {
		if a.Name == name {
			return a, true
		}
	}
	return Attribute{}, false
}

// FindDerivations returns the derivation calls in f in source order,
// including ones nested inside others.
func FindDerivations(f *syntax.File) []Derivation {
	var out []Derivation
	syntax.Inspect(f.Root, func(n syntax.Node) bool {
		app, ok := n.(*syntax.Apply)
		if !ok {
			return true
		}
		fn, arg := app.Func, app.Arg
		// Only the innermost application of a curried call names the function.
		if _, curried := fn.(*syntax.Apply); curried {
			return true
		}
		kind, ok := derivationKind(fn)
		if !ok {
			return true
		}
		set := argumentSet(arg, 0)
		if set == nil {
			return true
		}
		d := Derivation{Kind: kind, Call: app.Loc, Func: fn.Span(), Attrs: set.Loc}
		for _, b := range set.Bindings {
			d.Attributes = append(d.Attributes, attributes(f, b)...)
		}
		for _, key := range []string{"pname", "name"} {
			if a, ok := d.Attr(key); ok && a.HasString {
				d.Name = a.String
				break
			}
		}
		out = append(out, d)
		return true
	})
	return out
}

func derivationKind(fn syntax.Node) (DerivationKind, bool) {
	var name string
	switch fn := fn.(type) {
	case *syntax.Ident:
		name = fn.Name
		if name == "derivation" {
			return KindDerivation, true
		}
	case *syntax.Select:
		if fn.Default != nil {
			return 0, false
		}
		last, ok := fn.Path.Elems[len(fn.Path.Elems)-1].(*syntax.Ident)
		if !ok {
			return 0, false
		}
		name = last.Name
	case *syntax.Paren:
		return derivationKind(fn.Expr)
	}
	switch name {
	case "mkDerivation":
		return KindMkDerivation, true
	case "overrideAttrs":
		return KindOverrideAttrs, true
	}
	return 0, false
}

// argumentSet finds the attribute set a derivation call is given: directly,
// as a rec set, or returned by `finalAttrs: { }` / `final: prev: { }`,
// possibly through let, with, assert, parentheses or `prev // { }`. (A
// package set's file returns its set the same way: FindCallPackages.)
func argumentSet(n syntax.Node, depth int) *syntax.AttrSet {
	if depth > 16 {
		return nil
	}
	switch n := n.(type) {
	case *syntax.AttrSet:
		return n
	case *syntax.Paren:
		return argumentSet(n.Expr, depth+1)
	case *syntax.Lambda:
		return argumentSet(n.Body, depth+1)
	case *syntax.Let:
		return argumentSet(n.Body, depth+1)
	case *syntax.With:
		return argumentSet(n.Body, depth+1)
	case *syntax.Assert:
		return argumentSet(n.Body, depth+1)
	case *syntax.Binary:
		if n.Op == "//" {
			return argumentSet(n.Right, depth+1)
		}
	}
	return nil
}

func attributes(f *syntax.File, b syntax.Binding) []Attribute {
	switch b := b.(type) {
	case *syntax.Attr:
		a := Attribute{
			Path:  attrPathNames(b.Path),
			Key:   b.Path.Loc,
			Value: b.Value.Span(),
			Text:  f.Text(b.Value.Span()),
		}
		a.Name = a.Path[0]
		if s, ok := b.Value.(*syntax.String); ok {
			a.String, a.HasString = s.Literal()
		}
		a.Simple = isLiteral(b.Value)
		return []Attribute{a}
	case *syntax.Inherit:
		var out []Attribute
		for _, name := range b.Names {
			s := name.Span()
			key := attrName(name)
			out = append(out, Attribute{
				Name: key, Path: []string{key}, Key: s, Value: s,
				Text: f.Text(s), Inherited: true,
			})
		}
		return out
	}
	return nil
}

func attrPathNames(p *syntax.AttrPath) []string {
	names := make([]string, len(p.Elems))
	for i, e := range p.Elems {
		names[i] = attrName(e)
	}
	return names
}

// attrName is the static name of an attribute path element, "" if dynamic.
func attrName(n syntax.Node) string {
	switch n := n.(type) {
	case *syntax.Ident:
		return n.Name
	case *syntax.String:
		s, _ := n.Literal()
		return s
	}
	return ""
}

func isLiteral(n syntax.Node) bool {
	switch n := n.(type) {
	case *syntax.Int, *syntax.Float, *syntax.URI, *syntax.SearchPath:
		return true
	case *syntax.String:
		_, ok := n.Literal()
		return ok
	case *syntax.Path:
		_, ok := n.Literal()
		return ok
	case *syntax.Ident:
		return n.Name == "true" || n.Name == "false" || n.Name == "null"
	case *syntax.Unary:
		switch n.Expr.(type) {
		case *syntax.Int, *syntax.Float:
			return n.Op == "-"
		}
		return false
	case *syntax.List:
		for _, e := range n.Elems {
			if !isLiteral(e) {
				return false
			}
		}
		return true
	}
	return false
}

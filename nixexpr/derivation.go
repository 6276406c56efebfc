package nixexpr

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
	Call Span
	// Func spans the function expression, e.g. `stdenv.mkDerivation`.
	Func Span
	// Attrs spans the attribute set holding Attributes.
	Attrs      Span
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
	Key, Value Span
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
func FindDerivations(f *File) []Derivation {
	var out []Derivation
	Inspect(f.Root, func(n Node) bool {
		app, ok := n.(*Apply)
		if !ok {
			return true
		}
		fn, arg := app.Func, app.Arg
		// Only the innermost application of a curried call names the function.
		if _, curried := fn.(*Apply); curried {
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

func derivationKind(fn Node) (DerivationKind, bool) {
	var name string
	switch fn := fn.(type) {
	case *Ident:
		name = fn.Name
		if name == "derivation" {
			return KindDerivation, true
		}
	case *Select:
		if fn.Default != nil {
			return 0, false
		}
		last, ok := fn.Path.Elems[len(fn.Path.Elems)-1].(*Ident)
		if !ok {
			return 0, false
		}
		name = last.Name
	case *Paren:
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
func argumentSet(n Node, depth int) *AttrSet {
	if depth > 16 {
		return nil
	}
	switch n := n.(type) {
	case *AttrSet:
		return n
	case *Paren:
		return argumentSet(n.Expr, depth+1)
	case *Lambda:
		return argumentSet(n.Body, depth+1)
	case *Let:
		return argumentSet(n.Body, depth+1)
	case *With:
		return argumentSet(n.Body, depth+1)
	case *Assert:
		return argumentSet(n.Body, depth+1)
	case *Binary:
		if n.Op == "//" {
			return argumentSet(n.Right, depth+1)
		}
	}
	return nil
}

func attributes(f *File, b Binding) []Attribute {
	switch b := b.(type) {
	case *Attr:
		a := Attribute{
			Path:  attrPathNames(b.Path),
			Key:   b.Path.Loc,
			Value: b.Value.Span(),
			Text:  f.Text(b.Value.Span()),
		}
		a.Name = a.Path[0]
		if s, ok := b.Value.(*String); ok {
			a.String, a.HasString = s.Literal()
		}
		a.Simple = isLiteral(b.Value)
		return []Attribute{a}
	case *Inherit:
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

func attrPathNames(p *AttrPath) []string {
	names := make([]string, len(p.Elems))
	for i, e := range p.Elems {
		names[i] = attrName(e)
	}
	return names
}

// attrName is the static name of an attribute path element, "" if dynamic.
func attrName(n Node) string {
	switch n := n.(type) {
	case *Ident:
		return n.Name
	case *String:
		s, _ := n.Literal()
		return s
	}
	return ""
}

func isLiteral(n Node) bool {
	switch n := n.(type) {
	case *Int, *Float, *URI, *SearchPath:
		return true
	case *String:
		_, ok := n.Literal()
		return ok
	case *Path:
		_, ok := n.Literal()
		return ok
	case *Ident:
		return n.Name == "true" || n.Name == "false" || n.Name == "null"
	case *Unary:
		switch n.Expr.(type) {
		case *Int, *Float:
			return n.Op == "-"
		}
		return false
	case *List:
		for _, e := range n.Elems {
			if !isLiteral(e) {
				return false
			}
		}
		return true
	}
	return false
}

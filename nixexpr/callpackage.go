package nixexpr

import (
	"slices"
	"strings"

	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

// CallPackage is a binding of a package set that calls a file, as
// nixpkgs' all-packages.nix names its packages:
// `hello = callPackage ../applications/misc/hello { };`.
type CallPackage struct {
	// Attr is the attribute path of the binding, dotted (nested sets of
	// the package set add their names).
	Attr string
	// Path is the literal path the call names, as written (relative to
	// the file's directory unless absolute).
	Path string
	// Args is the source text of the argument set given after the path.
	Args string
}

// FindCallPackages returns the bindings of f's package set (the attribute
// set it returns, found as a derivation call's: through lambdas, let, with,
// assert, parentheses and //) whose
// value is `callPackage PATH ARGS` (or `X.callPackage`), in source order,
// descending into nested attribute sets. Calls whose path is not a literal
// are skipped.
func FindCallPackages(f *syntax.File) []CallPackage {
	var out []CallPackage
	var walk func(set *syntax.AttrSet, prefix string)
	walk = func(set *syntax.AttrSet, prefix string) {
		for _, b := range set.Bindings {
			a, ok := b.(*syntax.Attr)
			if !ok {
				continue
			}
			names := attrPathNames(a.Path)
			if slices.Contains(names, "") {
				continue // a dynamic name
			}
			attr := prefix + strings.Join(names, ".")
			value := unparen(a.Value)
			if inner, ok := value.(*syntax.AttrSet); ok {
				walk(inner, attr+".")
				continue
			}
			if cp, ok := callPackageOf(f, value); ok {
				cp.Attr = attr
				out = append(out, cp)
			}
		}
	}
	if set := argumentSet(f.Root, 0); set != nil {
		walk(set, "")
	}
	return out
}

func unparen(n syntax.Node) syntax.Node {
	for {
		p, ok := n.(*syntax.Paren)
		if !ok {
			return n
		}
		n = p.Expr
	}
}

// callPackageOf matches `callPackage PATH ARGS`.
func callPackageOf(f *syntax.File, n syntax.Node) (CallPackage, bool) {
	outer, ok := n.(*syntax.Apply)
	if !ok {
		return CallPackage{}, false
	}
	inner, ok := unparen(outer.Func).(*syntax.Apply)
	if !ok || !isCallPackage(unparen(inner.Func)) {
		return CallPackage{}, false
	}
	p, ok := unparen(inner.Arg).(*syntax.Path)
	if !ok {
		return CallPackage{}, false
	}
	path, ok := p.Literal()
	if !ok {
		return CallPackage{}, false
	}
	return CallPackage{Path: path, Args: f.Text(outer.Arg.Span())}, true
}

func isCallPackage(fn syntax.Node) bool {
	switch fn := fn.(type) {
	case *syntax.Ident:
		return fn.Name == "callPackage"
	case *syntax.Select:
		last, ok := fn.Path.Elems[len(fn.Path.Elems)-1].(*syntax.Ident)
		return ok && fn.Default == nil && last.Name == "callPackage"
	}
	return false
}

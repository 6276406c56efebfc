package nixexpr

import (
	"slices"
	"strings"
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
func FindCallPackages(f *File) []CallPackage {
	var out []CallPackage
	var walk func(set *AttrSet, prefix string)
	walk = func(set *AttrSet, prefix string) {
		for _, b := range set.Bindings {
			a, ok := b.(*Attr)
			if !ok {
				continue
			}
			names := attrPathNames(a.Path)
			if slices.Contains(names, "") {
				continue // a dynamic name
			}
			attr := prefix + strings.Join(names, ".")
			value := unparen(a.Value)
			if inner, ok := value.(*AttrSet); ok {
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

func unparen(n Node) Node {
	for {
		p, ok := n.(*Paren)
		if !ok {
			return n
		}
		n = p.Expr
	}
}

// callPackageOf matches `callPackage PATH ARGS`.
func callPackageOf(f *File, n Node) (CallPackage, bool) {
	outer, ok := n.(*Apply)
	if !ok {
		return CallPackage{}, false
	}
	inner, ok := unparen(outer.Func).(*Apply)
	if !ok || !isCallPackage(unparen(inner.Func)) {
		return CallPackage{}, false
	}
	p, ok := unparen(inner.Arg).(*Path)
	if !ok {
		return CallPackage{}, false
	}
	path, ok := p.Literal()
	if !ok {
		return CallPackage{}, false
	}
	return CallPackage{Path: path, Args: f.Text(outer.Arg.Span())}, true
}

func isCallPackage(fn Node) bool {
	switch fn := fn.(type) {
	case *Ident:
		return fn.Name == "callPackage"
	case *Select:
		last, ok := fn.Path.Elems[len(fn.Path.Elems)-1].(*Ident)
		return ok && fn.Default == nil && last.Name == "callPackage"
	}
	return false
}

// Quote renders s as a Nix string literal ("…", with \, " and ${ escaped).
func Quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

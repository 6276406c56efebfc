package phaserules

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// CodeReads lists the variables bash code reads and the commands it calls.
// Dynamic reads (${!x}, eval) cannot be seen; callers treat what they miss
// conservatively.
func CodeReads(code string) (vars, calls map[string]bool) {
	vars, calls = map[string]bool{}, map[string]bool{}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(code), "")
	if err != nil {
		// Unparsable code: fall back to every identifier-like word, which
		// over-approximates reads (safe for cache keys).
		for _, w := range strings.FieldsFunc(code, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			vars[w], calls[w] = true, true
		}
		return vars, calls
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.ParamExp:
			if n.Param != nil {
				vars[n.Param.Value] = true
			}
		case *syntax.ArithmExp, *syntax.ArithmCmd:
			// bare names in arithmetic are reads
			syntax.Walk(n, func(m syntax.Node) bool {
				if lit, ok := m.(*syntax.Lit); ok && isName(lit.Value) {
					vars[lit.Value] = true
				}
				return true
			})
		case *syntax.TestClause:
			syntax.Walk(n, func(m syntax.Node) bool {
				if u, ok := m.(*syntax.UnaryTest); ok && u.Op == syntax.TsVarSet {
					if w, ok := u.X.(*syntax.Word); ok {
						vars[w.Lit()] = true
					}
				}
				return true
			})
		case *syntax.CallExpr:
			if len(n.Args) > 0 {
				if name := n.Args[0].Lit(); name != "" {
					calls[name] = true
					// runHook NAME and the like read $NAME dynamically.
					if (name == "runHook" || name == "runOneHook") && len(n.Args) > 1 {
						vars[n.Args[1].Lit()] = true
					}
				}
			}
		}
		return true
	})
	return vars, calls
}

func isName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// PhaseReads computes, for each phase, the variables its code reads,
// following calls into the given shell functions (the stdenv's and the
// derivation's). code maps a phase to its code: the derivation's own
// attribute when it sets one, else the stdenv function of that name.
func PhaseReads(phases []string, code map[string]string, funcs map[string]string, hooks func(phase string) []string) map[string]map[string]bool {
	funcReads := map[string]map[string]bool{}
	var readsOf func(src string, seen map[string]bool) map[string]bool
	readsOf = func(src string, seen map[string]bool) map[string]bool {
		vars, calls := CodeReads(src)
		for c := range calls {
			body, ok := funcs[c]
			if !ok || seen[c] {
				continue
			}
			seen[c] = true
			if _, done := funcReads[c]; !done {
				funcReads[c] = readsOf(body, seen)
			}
			for v := range funcReads[c] {
				vars[v] = true
			}
		}
		return vars
	}
	out := map[string]map[string]bool{}
	for _, p := range phases {
		src := code[p]
		if src == "" {
			src = funcs[p]
		}
		for _, h := range hooks(p) {
			src += "\n" + h
		}
		out[p] = readsOf(src, map[string]bool{})
	}
	return out
}

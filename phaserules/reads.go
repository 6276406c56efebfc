package phaserules

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// CodeReads lists the variables bash code reads and the commands it calls.
// Dynamic reads (${!x}, eval) cannot be seen; callers treat what they miss
// conservatively.
func CodeReads(code string) (vars, calls map[string]bool) {
	f := analyze(code)
	return f.vars, f.calls
}

// bashFacts are what the reads analysis knows of one piece of bash code.
type bashFacts struct {
	vars  map[string]bool // variables read
	calls map[string]bool // commands called by name
	// args are the literal words that look like variable names passed to
	// each command: a function that takes variable names (takesNames)
	// reads them.
	args map[string][]string
	// locals are declared local (local, declare, typeset in a function
	// body) or are loop variables: reads of them are not reads of an
	// attribute.
	locals map[string]bool
	// takesNames: the code reads variables whose names it is given
	// (${!name}, local -n, printf -v, eval), like concatTo or runHook.
	takesNames bool
}

func analyze(code string) bashFacts {
	f := bashFacts{vars: map[string]bool{}, calls: map[string]bool{}, args: map[string][]string{}, locals: map[string]bool{}}
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(code), "")
	if err != nil {
		// Unparsable code: fall back to every identifier-like word, which
		// over-approximates reads (safe for cache keys: the package's own
		// code then names more; the stdenv's is parsed by bash already).
		for _, w := range strings.FieldsFunc(code, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			f.vars[w], f.calls[w] = true, true
		}
		return f
	}
	syntax.Walk(file, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.ParamExp:
			if n.Param != nil {
				f.vars[n.Param.Value] = true
			}
			if n.Excl && n.Index == nil && n.Names == 0 {
				f.takesNames = true
			}
		case *syntax.ArithmExp, *syntax.ArithmCmd:
			// bare names in arithmetic are reads
			syntax.Walk(n, func(m syntax.Node) bool {
				if lit, ok := m.(*syntax.Lit); ok && isName(lit.Value) {
					f.vars[lit.Value] = true
				}
				return true
			})
		case *syntax.TestClause:
			syntax.Walk(n, func(m syntax.Node) bool {
				if u, ok := m.(*syntax.UnaryTest); ok && u.Op == syntax.TsVarSet {
					if w, ok := u.X.(*syntax.Word); ok {
						f.vars[w.Lit()] = true
					}
				}
				return true
			})
		case *syntax.DeclClause:
			variant := n.Variant.Value
			for _, a := range n.Args {
				if a.Naked && a.Name == nil && a.Value != nil && strings.HasPrefix(a.Value.Lit(), "-") && strings.Contains(a.Value.Lit(), "n") {
					f.takesNames = true // a nameref
				}
				if a.Name != nil && (variant == "local" || variant == "declare" || variant == "typeset") {
					f.locals[a.Name.Value] = true
				}
			}
		case *syntax.WordIter:
			f.locals[n.Name.Value] = true
		case *syntax.CallExpr:
			if len(n.Args) == 0 {
				break
			}
			name := n.Args[0].Lit()
			if name == "" {
				break
			}
			f.calls[name] = true
			for _, w := range n.Args[1:] {
				// NAME or NAME=default (concatTo flagsArray patchFlags=-p1)
				if lit, _, _ := strings.Cut(w.Lit(), "="); isName(lit) {
					f.args[name] = append(f.args[name], lit)
				}
			}
			switch name {
			case "eval":
				f.takesNames = true
			case "printf":
				if len(n.Args) > 1 && n.Args[1].Lit() == "-v" {
					f.takesNames = true
				}
			case "runHook", "runOneHook":
				// runHook NAME runs $NAME and the array ${NAME%Hook}Hooks.
				if len(n.Args) > 1 && isName(n.Args[1].Lit()) {
					hook := n.Args[1].Lit()
					f.vars[hook], f.vars[hookArray(hook)] = true, true
				}
			}
		}
		return true
	})
	return f
}

// DeclaredFuncs names the functions bash code declares. The runner leaves
// out of the stdenv's functions those the package's own code declares
// (a preHook defining a helper): what they read is not the stdenv's.
func DeclaredFuncs(code string) []string {
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(code), "")
	if err != nil {
		return nil
	}
	var names []string
	syntax.Walk(file, func(n syntax.Node) bool {
		if fd, ok := n.(*syntax.FuncDecl); ok && fd.Name != nil {
			names = append(names, fd.Name.Value)
		}
		return true
	})
	return names
}

// hookArray is the array runHook runs besides NAME itself.
func hookArray(hook string) string { return strings.TrimSuffix(hook, "Hook") + "Hooks" }

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

// Reads are the variables a build's bash code reads in each phase, kept
// apart by whose code reads them: the stdenv's (the functions setup.sh
// and its setup hooks define, and the hooks they register) or the
// package's own phase and hook text. Only the stdenv's reads may place an
// attribute after the first phase (see Place); the package's own text can
// only place one earlier.
type Reads struct {
	Stdenv  map[string]map[string]bool
	Package map[string]map[string]bool
}

// PhaseReads computes, for each phase, the variables its code reads.
// code maps a phase to the package's own code for it (its attribute, when
// it sets one; else the stdenv function of that name runs); hooks gives
// the package's own hook text of a phase (preInstall, postInstall). funcs
// are the stdenv's functions after setup and hookArrays the hook arrays it
// registered (fixupOutputHooks → its functions), both from the probe.
// Reads of a stdenv function's own locals are not reads.
func PhaseReads(phases []string, code map[string]string, funcs map[string]string, hooks func(phase string) []string, hookArrays map[string][]string) Reads {
	facts := map[string]bashFacts{}
	factsOf := func(fn string) bashFacts {
		f, ok := facts[fn]
		if !ok {
			f = analyze(funcs[fn])
			facts[fn] = f
		}
		return f
	}
	// callees are the stdenv functions code with facts f runs: the ones it
	// calls and those in the hook arrays of the hooks it runs.
	callees := func(f bashFacts) []string {
		var out []string
		for c := range f.calls {
			if _, ok := funcs[c]; ok {
				out = append(out, c)
			}
		}
		for v := range f.vars {
			for _, fn := range hookArrays[v] {
				if _, ok := funcs[fn]; ok {
					out = append(out, fn)
				}
			}
		}
		return out
	}
	// named are the literal names code passes to stdenv functions that
	// read variables by name (concatTo flagsArray configureFlags).
	named := func(f bashFacts) []string {
		var out []string
		for c, args := range f.args {
			if _, ok := funcs[c]; ok && factsOf(c).takesNames {
				out = append(out, args...)
			}
		}
		return out
	}
	// stdenvReads are the free reads of a stdenv function and everything
	// it runs, without its own locals.
	memo := map[string]map[string]bool{}
	var stdenvReads func(fn string, seen map[string]bool) map[string]bool
	stdenvReads = func(fn string, seen map[string]bool) map[string]bool {
		if r, ok := memo[fn]; ok {
			return r
		}
		seen[fn] = true
		f := factsOf(fn)
		out := map[string]bool{}
		for v := range f.vars {
			out[v] = true
		}
		for _, v := range named(f) {
			out[v] = true
		}
		for _, c := range callees(f) {
			if seen[c] {
				continue
			}
			for v := range stdenvReads(c, seen) {
				out[v] = true
			}
		}
		for v := range f.locals {
			delete(out, v)
		}
		memo[fn] = out
		return out
	}
	r := Reads{Stdenv: map[string]map[string]bool{}, Package: map[string]map[string]bool{}}
	for _, p := range phases {
		stdenv, own := map[string]bool{}, map[string]bool{}
		var roots []string // the stdenv functions the phase runs directly
		var texts []string // the package's own code of the phase
		if c, ok := code[p]; ok && c != "" {
			texts = append(texts, c)
		} else if _, ok := funcs[p]; ok {
			roots = append(roots, p)
		}
		texts = append(texts, hooks(p)...)
		for _, t := range texts {
			f := analyze(t)
			for v := range f.vars {
				own[v] = true
			}
			for _, v := range named(f) {
				own[v] = true
			}
			roots = append(roots, callees(f)...)
		}
		for _, fn := range roots {
			for v := range stdenvReads(fn, map[string]bool{}) {
				stdenv[v] = true
			}
		}
		r.Stdenv[p], r.Package[p] = stdenv, own
	}
	return r
}

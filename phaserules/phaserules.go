// Package phaserules decides which build phase a derivation attribute first
// matters to. The runner keys its layers with it and the language server
// places its lenses with it, so the rules live here once.
package phaserules

import (
	"strings"
	"unicode"
)

// Placement says where an attribute belongs and why.
type Placement struct {
	Phase string `json:"phase"` // the first phase whose key covers the attribute
	Rule  Rule   `json:"rule"`
	Why   string `json:"why"`
	// NamedBy is the first phase whose code in the package names the
	// attribute, when a rule keys it from the first phase all the same.
	NamedBy string `json:"namedBy,omitempty"`
}

// Rule names the family of the rule that placed an attribute.
type Rule string

// The placement rule, one family each. An attribute may be keyed later
// than the first phase only when the stdenv itself consumes it there and
// programs are not expected to read it. Nix exports every attribute to
// every phase, and programs read the environment: make imports all of it
// as make variables, configure scripts and generators read what they
// like, the compiler wrapper reads NIX_*. So only these move later:
//   - RulePhase, RuleHook: phase bodies and hooks (*Phase, pre*/post*,
//     *Hook(s)), which the stdenv evaluates in their phase;
//   - RuleSwitch: the phase switches (dontBuild, doCheck) its phase loop
//     reads;
//   - RuleControl: the stdenv's own controls, the attributes setup.sh and
//     its setup hooks read in a phase (configureFlags, makeFlags,
//     dontStrip, …), found by the reads analysis of the build's own
//     stdenv functions (PhaseReads), not a hand-kept list;
//
// and the package's own code of an earlier phase naming one of them
// moves it to that phase (RulePackageCode). Everything else keys from the
// first phase: what the stdenv reads when it is set up (RuleSetup),
// env.* (RuleEnv), upper-case names the stdenv reads too, the convention
// of what programs read (NIX_*, CC, CFLAGS, LDFLAGS, LANG: RuleProgram), and
// names the package chose or nothing is known to read (RuleAny): that
// the package's own bash text names one in postInstall proves nothing
// about who else reads it. A needless rebuild is better than a wrong reuse.
const (
	RuleSetup       Rule = "setup"
	RuleEnv         Rule = "env"
	RuleProgram     Rule = "program"
	RuleAny         Rule = "any"
	RulePhase       Rule = "phase"
	RuleHook        Rule = "hook"
	RuleSwitch      Rule = "switch"
	RuleControl     Rule = "control"
	RulePackageCode Rule = "package-code"
)

// FromFirstPhase is the start of the reason of every rule that keys an
// attribute from the first phase.
const FromFirstPhase = "read from the first phase on: "

// Setup is the placement of attributes read while the stdenv is sourced,
// before any phase: they belong to the first phase.
const Setup = "setup"

// global attributes are read by the stdenv when it is sourced (inputs,
// outputs, the builder itself), so they matter to every phase.
var global = map[string]bool{}

func init() {
	for _, a := range strings.Fields(`name pname version system builder args stdenv outputs
		buildInputs nativeBuildInputs propagatedBuildInputs propagatedNativeBuildInputs
		depsBuildBuild depsBuildTarget depsHostHost depsTargetTarget depsBuildBuildPropagated
		depsBuildTargetPropagated depsHostHostPropagated depsTargetTargetPropagated
		checkInputs nativeCheckInputs installCheckInputs nativeInstallCheckInputs
		__structuredAttrs __json passAsFile strictDeps phases
		outputDev outputBin outputLib outputDoc outputMan outputInfo outputInclude
		setupHook setupHooks shell SHELL PATH HOME NIX_DEBUG noDumpEnvVars
		impureEnvVars allowSubstitutes preferLocalBuild requiredSystemFeatures
		__impureHostDeps __propagatedImpureHostDeps __sandboxProfile __darwinAllowLocalNetworking
		outputHash outputHashAlgo outputHashMode preHook postHook`) {
		global[a] = true
	}
	// The lists of extra phases decide the phase list itself.
	global[ListAfter] = true
	for _, p := range Standard {
		if p.ListBefore != "" {
			global[p.ListBefore] = true
		}
	}
}

// Rules places attributes for one derivation's phase list.
type Rules struct {
	phases []string
	// stdenv[i] and own[i] hold the variables phase i's code reads: the
	// stdenv's code, and the package's own phase and hook text.
	stdenv, own []map[string]bool
	outputs     map[string]bool
}

// WithOutputs names the derivation's outputs ($out, $dev): the stdenv sets
// them up, and programs read them from the first phase on.
func (r *Rules) WithOutputs(names ...string) *Rules {
	r.outputs = map[string]bool{}
	for _, n := range names {
		r.outputs[n] = true
	}
	return r
}

// New returns rules for the ordered phases; reads gives, per phase, the
// variables its code reads (see PhaseReads). Without them (the zero Reads,
// before a build's stdenv was probed) the controls are the guess of
// Standard's Controls.
func New(phases []string, reads Reads) *Rules {
	r := &Rules{phases: phases}
	for _, p := range phases {
		stdenv := reads.Stdenv[p]
		if reads.Stdenv == nil {
			// No probe yet (the language server's guess): nixpkgs' controls.
			stdenv = map[string]bool{}
			for _, sp := range Standard {
				if sp.Name == p {
					for _, a := range strings.Fields(sp.Controls) {
						stdenv[a] = true
					}
				}
			}
		}
		r.stdenv = append(r.stdenv, stdenv)
		r.own = append(r.own, reads.Package[p])
	}
	return r
}

// Place returns the first phase whose key covers an attribute, and the
// rule that put it there (see Rule).
func (r *Rules) Place(attr string) Placement {
	first := ""
	if len(r.phases) > 0 {
		first = r.phases[0]
	}
	fromFirst := func(rule Rule, why string) Placement {
		return Placement{Phase: first, Rule: rule, Why: FromFirstPhase + why}
	}
	switch {
	case global[attr] || r.outputs[attr]:
		return fromFirst(RuleSetup, "the stdenv reads it when it is set up")
	case strings.HasPrefix(attr, "env."):
		return fromFirst(RuleEnv, "env.* is the environment programs read")
	}
	pl, ok := r.stdenvPlace(attr)
	if isEnvName(attr) && (ok && pl.Rule == RuleControl || strings.HasPrefix(attr, "NIX_")) {
		// The stdenv reading CC in configurePhase says nothing of the
		// programs that read it before.
		pl := fromFirst(RuleProgram, "programs read environment variables like it (NIX_*, CC, CFLAGS, LDFLAGS, PKG_CONFIG_PATH, LANG, …)")
		if i := r.firstOwn(attr); i >= 0 {
			pl.NamedBy = r.phases[i]
		}
		return pl
	}
	if !ok {
		pl := fromFirst(RuleAny, "programs may read any attribute")
		if i := r.firstOwn(attr); i >= 0 {
			pl.NamedBy = r.phases[i]
			pl.Why += " (the package's own code of " + r.phases[i] + " naming it does not make it the stdenv's)"
		}
		return pl
	}
	// The package's own code of an earlier phase reads it there.
	if i := r.firstOwn(attr); i >= 0 && i < indexOf(r.phases, pl.Phase) {
		return Placement{Phase: r.phases[i], Rule: RulePackageCode, Why: "the package's own code of " + r.phases[i] + " reads it, before the stdenv's code of " + pl.Phase}
	}
	return pl
}

// stdenvPlace is the phase the stdenv itself consumes attr in, if any.
func (r *Rules) stdenvPlace(attr string) (Placement, bool) {
	if r.has(attr) {
		return Placement{Phase: attr, Rule: RulePhase, Why: "the phase's own code, which the stdenv runs in " + attr}, true
	}
	for _, pfx := range []string{"pre", "post"} {
		if p := hookPhase(attr, pfx); p != "" && r.has(p) {
			return Placement{Phase: p, Rule: RuleHook, Why: "a hook of " + p + ", which the stdenv runs there"}, true
		}
	}
	if p := toggledPhase(attr); p != "" && r.has(p) {
		return Placement{Phase: p, Rule: RuleSwitch, Why: "switches " + p + ", read by the stdenv's phase loop"}, true
	}
	for i, reads := range r.stdenv {
		if !reads[attr] {
			continue
		}
		if strings.HasSuffix(attr, "Hook") || strings.HasSuffix(attr, "Hooks") {
			return Placement{Phase: r.phases[i], Rule: RuleHook, Why: "a hook the stdenv runs in " + r.phases[i]}, true
		}
		return Placement{Phase: r.phases[i], Rule: RuleControl, Why: "a control of the stdenv, which its code (setup.sh and setup hooks) reads in " + r.phases[i] + "; programs are not expected to read it"}, true
	}
	return Placement{}, false
}

// isEnvName: upper-case names (CC, LANG, NIX_CFLAGS_COMPILE) are the
// environment's convention for what programs read.
func isEnvName(attr string) bool {
	return strings.ToLower(attr) != attr && strings.ToUpper(attr) == attr
}

// firstOwn is the first phase whose package code names attr, -1 if none.
func (r *Rules) firstOwn(attr string) int {
	for i, own := range r.own {
		if own[attr] {
			return i
		}
	}
	return -1
}

func (r *Rules) has(phase string) bool { return indexOf(r.phases, phase) >= 0 }

func indexOf(phases []string, phase string) int {
	for i, p := range phases {
		if p == phase {
			return i
		}
	}
	return -1
}

// hookPhase: preInstall → installPhase, postStamp → stampPhase.
func hookPhase(attr, prefix string) string {
	rest, ok := strings.CutPrefix(attr, prefix)
	if !ok || rest == "" || !unicode.IsUpper(rune(rest[0])) || strings.HasSuffix(rest, "Phase") {
		return ""
	}
	return lowerFirst(rest) + "Phase"
}

// Hooks names a phase's hook attributes: installPhase → preInstall,
// postInstall (the inverse of hookPhase).
func Hooks(phase string) []string {
	stem := strings.TrimSuffix(phase, "Phase")
	if stem == "" {
		return nil
	}
	stem = strings.ToUpper(stem[:1]) + stem[1:]
	return []string{"pre" + stem, "post" + stem}
}

// toggledPhase: dontBuild → buildPhase, doCheck → checkPhase.
func toggledPhase(attr string) string {
	for _, pfx := range []string{"dont", "do"} {
		rest, ok := strings.CutPrefix(attr, pfx)
		if ok && rest != "" && unicode.IsUpper(rune(rest[0])) {
			p := lowerFirst(rest) + "Phase"
			if isStandard(p) {
				return p
			}
		}
	}
	return ""
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

// ShortName turns "installPhase" into "install" for display and accepts
// either form back through Resolve.
func ShortName(phase string) string { return strings.TrimSuffix(phase, "Phase") }

// Resolve finds a phase of the list from a user's spelling ("build",
// "buildPhase"); "" when none matches.
func Resolve(phases []string, name string) string {
	for _, p := range phases {
		if p == name || ShortName(p) == name || strings.EqualFold(p, name) || strings.EqualFold(ShortName(p), name) {
			return p
		}
	}
	return ""
}

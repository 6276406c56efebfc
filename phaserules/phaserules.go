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
	Phase string `json:"phase"` // the first phase that reads the attribute
	Why   string `json:"why"`
}

// Setup is the placement of attributes read while the stdenv is sourced,
// before any phase: they belong to the first phase.
const Setup = "setup"

// global attributes are read by the stdenv when it is sourced (inputs,
// outputs, the builder itself), so they matter to every phase.
var global = map[string]bool{}

// known maps well-known stdenv attributes to the phase function reading them.
var known = map[string]string{}

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
		outputHash outputHashAlgo outputHashMode`) {
		global[a] = true
	}
	// The lists of extra phases decide the phase list itself.
	global[ListAfter] = true
	for _, p := range Standard {
		if p.ListBefore != "" {
			global[p.ListBefore] = true
		}
	}
	place := func(phase, attrs string) {
		for _, a := range strings.Fields(attrs) {
			known[a] = phase
		}
	}
	place("unpackPhase", "src srcs sourceRoot setSourceRoot unpackCmd dontMakeSourcesWritable")
	place("patchPhase", "patches patchFlags")
	place("configurePhase", `configureScript configureFlags configureFlagsArray configurePlatforms
		prefix prefixKey dontAddPrefix dontAddDisableDepTrack dontDisableStatic dontFixLibtool
		dontAddStaticConfigureFlags cmakeFlags mesonFlags`)
	place("buildPhase", `makeFlags makeFlagsArray buildFlags buildFlagsArray makefile
		enableParallelBuilding`)
	place("checkPhase", "checkFlags checkFlagsArray checkTarget enableParallelChecking")
	place("installPhase", "installFlags installFlagsArray installTargets enableParallelInstalling")
	place("fixupPhase", `dontStrip dontStripHost dontStripTarget stripAllList stripDebugList
		stripDebugFlags stripAllFlags dontPatchELF dontPatchShebangs dontMoveSbin dontMoveLib64
		dontGzipMan dontPruneLibtoolFiles forceShare separateDebugInfo`)
	place("installCheckPhase", "installCheckTarget installCheckFlags installCheckFlagsArray")
	place("distPhase", "distFlags distFlagsArray distTarget tarballs dontCopyDist")
}

// Rules places attributes for one derivation's phase list.
type Rules struct {
	phases []string
	// reads[i] holds the variables phase i's code reads (its own code, its
	// hooks, and the functions it calls).
	reads []map[string]bool
}

// New returns rules for the ordered phases; reads gives, per phase, the
// variables its code reads (see Reads). reads may be nil.
func New(phases []string, reads map[string]map[string]bool) *Rules {
	r := &Rules{phases: phases}
	for _, p := range phases {
		r.reads = append(r.reads, reads[p])
	}
	return r
}

// Place returns the phase an attribute first matters to. When unsure it
// answers the first phase: a needless rebuild is better than a wrong reuse.
func (r *Rules) Place(attr string) Placement {
	first := ""
	if len(r.phases) > 0 {
		first = r.phases[0]
	}
	if global[attr] || strings.HasPrefix(attr, "NIX_") {
		return Placement{first, "read when the stdenv is set up"}
	}
	if r.has(attr) {
		return Placement{attr, "the phase's own code"}
	}
	for _, pfx := range []string{"pre", "post"} {
		if p := hookPhase(attr, pfx); p != "" && r.has(p) {
			return Placement{p, "hook of " + p}
		}
	}
	if p := toggledPhase(attr); p != "" {
		if r.has(p) {
			return Placement{p, "switches " + p}
		}
		return Placement{first, "switches " + p + ", which is not in the phase list"}
	}
	if p, ok := known[attr]; ok && r.has(p) {
		return Placement{p, "read by " + p}
	}
	for i, reads := range r.reads {
		if reads[attr] {
			return Placement{r.phases[i], "read by the code of " + r.phases[i]}
		}
	}
	return Placement{first, "not read by any phase's code, so it may matter to all"}
}

func (r *Rules) has(phase string) bool {
	for _, p := range r.phases {
		if p == phase {
			return true
		}
	}
	return false
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

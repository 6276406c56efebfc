package phaserules

import (
	"strings"
	"testing"
)

// fakeStdenv is bash in the shape of nixpkgs' setup.sh and its setup
// hooks: flags read by name (concatTo, a nameref), hooks run through
// runHook and the arrays it reads, a setup hook's function registered in
// fixupOutputHooks, and locals that are no attribute.
var fakeStdenv = map[string]string{
	"runHook": `runHook () { local hookName="$1"; shift; local hooksSlice="${hookName%Hook}Hooks[@]"; local hook
	    for hook in "_callImplicitHook 0 $hookName" ${!hooksSlice+"${!hooksSlice}"}; do _eval "$hook" "$@"; done; }`,
	"concatTo":       `concatTo () { local -n targetref="$1"; shift; local arg name; for arg in "$@"; do local -n nameref="$arg"; targetref+=("${nameref[@]}"); done; }`,
	"unpackPhase":    `unpackPhase () { runHook preUnpack; for i in ${srcs:-$src}; do cp -r "$i" .; done; runHook postUnpack; }`,
	"patchPhase":     `patchPhase () { runHook prePatch; local -a patchesArray; concatTo patchesArray patches; local -a flagsArray; concatTo flagsArray patchFlags=-p1; for i in "${patchesArray[@]}"; do patch "${flagsArray[@]}" < "$i"; done; runHook postPatch; }`,
	"configurePhase": `configurePhase () { runHook preConfigure; local -a flagsArray; concatTo flagsArray configureFlags configureFlagsArray; CC=${CC:-cc} ./configure "${flagsArray[@]}"; runHook postConfigure; }`,
	"buildPhase":     `buildPhase () { runHook preBuild; local -a flagsArray; concatTo flagsArray makeFlags buildFlags; make "${flagsArray[@]}"; runHook postBuild; }`,
	"installPhase":   `installPhase () { runHook preInstall; local -a flagsArray; concatTo flagsArray makeFlags installFlags; make install "${flagsArray[@]}"; runHook postInstall; }`,
	"fixupPhase":     `fixupPhase () { runHook preFixup; for output in $(getAllOutputNames); do prefix="${!output}" runHook fixupOutput; done; runHook postFixup; }`,
	"_doStrip":       `_doStrip () { [[ -z ${dontStrip:-} ]] || return 0; _stripDirs "${stripDebugList[*]:-lib bin}" "-S"; }`,
	"_stripDirs":     `_stripDirs () { local dirs="$1" flags="$2"; strip $flags $dirs; }`,
}

var fakeHookArrays = map[string][]string{"fixupOutputHooks": {"_doStrip"}}

var stdPhases = []string{"unpackPhase", "patchPhase", "configurePhase", "buildPhase", "checkPhase", "stampPhase", "installPhase", "fixupPhase"}

// TestPlace has one row per family of the placement rule.
func TestPlace(t *testing.T) {
	own := map[string]string{
		"preConfigure": `echo "$buildFlags" > build-flags`,
		"postInstall":  `echo "$GREETING" > $out/share/greeting; echo "$installFlags"`,
		"postFixup":    `echo fixed > "$out/fixed"`,
		"stampPhase":   `echo "$stamp" > stamp.txt`,
	}
	reads := PhaseReads(stdPhases, map[string]string{"stampPhase": own["stampPhase"]}, fakeStdenv,
		func(p string) []string {
			var hs []string
			for _, h := range Hooks(p) {
				if own[h] != "" {
					hs = append(hs, own[h])
				}
			}
			return hs
		}, fakeHookArrays)
	r := New(stdPhases, reads).WithOutputs("out", "dev")
	for _, tc := range []struct {
		family, attr, phase string
		rule                Rule
	}{
		{"read when the stdenv is set up", "buildInputs", "unpackPhase", RuleSetup},
		{"an output the stdenv sets up", "out", "unpackPhase", RuleSetup},
		{"env.*", "env.GREETING", "unpackPhase", RuleEnv},
		{"what programs are known to read, though the stdenv reads it later", "CC", "unpackPhase", RuleProgram},
		{"what the cc-wrapper reads", "NIX_CFLAGS_COMPILE", "unpackPhase", RuleProgram},
		{"a name the package chose, named only in its own postInstall", "GREETING", "unpackPhase", RuleAny},
		{"a name the package's own phase reads", "stamp", "unpackPhase", RuleAny},
		{"a stdenv function's local is no attribute", "flags", "unpackPhase", RuleAny},
		{"unknown", "mystery", "unpackPhase", RuleAny},
		{"a phase body", "installPhase", "installPhase", RulePhase},
		{"a phase body the package adds", "stampPhase", "stampPhase", RulePhase},
		{"a pre/post hook", "postInstall", "installPhase", RuleHook},
		{"a hook array runHook runs", "postFixupHooks", "fixupPhase", RuleHook},
		{"a phase switch", "dontBuild", "buildPhase", RuleSwitch},
		{"a control read by name (concatTo)", "configureFlags", "configurePhase", RuleControl},
		{"a control read by a setup hook's function in a hook array", "dontStrip", "fixupPhase", RuleControl},
		{"a control named by the package's own code of an earlier phase", "buildFlags", "configurePhase", RulePackageCode},
		{"a control the package's own later code names stays", "installFlags", "installPhase", RuleControl},
		// The edits of an iteration keep their resume points (nixpkgs' shape).
		{"iteration: patches", "patches", "patchPhase", RuleControl},
		{"iteration: patchFlags, read as patchFlags=-p1", "patchFlags", "patchPhase", RuleControl},
		{"iteration: preConfigure", "preConfigure", "configurePhase", RuleHook},
		{"iteration: makeFlags", "makeFlags", "buildPhase", RuleControl},
		{"iteration: postFixup", "postFixup", "fixupPhase", RuleHook},
	} {
		got := r.Place(tc.attr)
		if got.Phase != tc.phase || got.Rule != tc.rule || got.Why == "" {
			t.Errorf("%s: Place(%s) = %s, %s (%s), want %s, %s", tc.family, tc.attr, got.Phase, got.Rule, got.Why, tc.phase, tc.rule)
		}
		if (got.Phase == stdPhases[0]) != strings.HasPrefix(got.Why, FromFirstPhase) && got.Rule != RulePhase {
			t.Errorf("%s: the reason %q does not say whether it reads from the first phase on", tc.family, got.Why)
		}
	}
	if got := r.Place("GREETING").Why; got != FromFirstPhase+"programs may read any attribute (the package's own code of installPhase naming it does not make it the stdenv's)" {
		t.Errorf("GREETING's reason: %s", got)
	}
}

// Without the stdenv's reads (the language server before a plan) the
// controls are nixpkgs' (a guess for the editor, never a key).
func TestPlaceWithoutReads(t *testing.T) {
	r := New(stdPhases, Reads{})
	for attr, want := range map[string]string{"configureFlags": "configurePhase", "postInstall": "installPhase", "doCheck": "checkPhase", "GREETING": "unpackPhase"} {
		if got := r.Place(attr); got.Phase != want {
			t.Errorf("Place(%s) = %s (%s), want %s", attr, got.Phase, got.Why, want)
		}
	}
}

func TestDeclaredFuncs(t *testing.T) {
	if got := DeclaredFuncs("helper() { echo \"$GREETING\"; }\nfunction other { :; }"); len(got) != 2 || got[0] != "helper" || got[1] != "other" {
		t.Errorf("DeclaredFuncs = %v", got)
	}
}

func TestResolve(t *testing.T) {
	for in, want := range map[string]string{"build": "buildPhase", "buildPhase": "buildPhase", "Install": "installPhase", "stamp": "stampPhase", "nope": ""} {
		if got := Resolve(stdPhases, in); got != want {
			t.Errorf("Resolve(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestCodeReadsBrokenCode(t *testing.T) {
	vars, _ := CodeReads(`echo "$unterminated`)
	if !vars["unterminated"] {
		t.Error("unparsable code must over-approximate its reads")
	}
}

func FuzzCodeReads(f *testing.F) {
	f.Add(`echo ${a:-$b} $((c+1)); [[ -v d ]]; runHook postX`)
	f.Fuzz(func(t *testing.T, code string) { CodeReads(code) })
}

func TestHooks(t *testing.T) {
	if got := Hooks("installPhase"); len(got) != 2 || got[0] != "preInstall" || got[1] != "postInstall" {
		t.Errorf("Hooks(installPhase) = %v", got)
	}
	for _, h := range Hooks("installCheckPhase") {
		if hookPhase(h, h[:len(h)-len("InstallCheck")]) != "installCheckPhase" {
			t.Errorf("%s does not map back to installCheckPhase", h)
		}
	}
}

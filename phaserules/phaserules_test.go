package phaserules

import "testing"

var stdPhases = []string{"unpackPhase", "patchPhase", "configurePhase", "buildPhase", "checkPhase", "stampPhase", "installPhase", "fixupPhase"}

func TestPlace(t *testing.T) {
	reads := PhaseReads(stdPhases,
		map[string]string{"installPhase": `mkdir -p $out; cp "$binary" $out/bin; runHook postInstall`},
		map[string]string{
			"buildPhase": `make ${makeFlags:-} ${buildFlags:-}; helper`,
			"helper":     `echo "$HELPER_SETTING"`,
		},
		func(p string) []string {
			if p == "checkPhase" {
				return []string{`echo ${checkSetting}`}
			}
			return nil
		})
	r := New(stdPhases, reads)
	for attr, want := range map[string]string{
		"src":            "unpackPhase",
		"patches":        "patchPhase",
		"configureFlags": "configurePhase",
		"makeFlags":      "buildPhase",
		"installPhase":   "installPhase",
		"postInstall":    "installPhase",
		"preConfigure":   "configurePhase",
		"dontBuild":      "buildPhase",
		"doCheck":        "checkPhase",
		"preStamp":       "stampPhase",
		"stampPhase":     "stampPhase",
		"binary":         "installPhase", // read by the phase's own code
		"HELPER_SETTING": "buildPhase",   // read by a function the phase calls
		"checkSetting":   "checkPhase",   // read by a hook of the phase
		"buildInputs":    "unpackPhase",  // read when the stdenv is set up
		"NIX_CFLAGS":     "unpackPhase",
		"mystery":        "unpackPhase", // unattributable: invalidates all
		"dontStrip":      "fixupPhase",
	} {
		if got := r.Place(attr); got.Phase != want {
			t.Errorf("Place(%s) = %s (%s), want %s", attr, got.Phase, got.Why, want)
		}
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

package lens

import (
	"slices"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/phaserules"
)

// The phases a client offers come from the server: the plan's once there
// is one, the standard ones before; the attribute on the cursor's line is
// placed as the runner places it.
func TestPhasesAt(t *testing.T) {
	src := pkgSrc[:strings.Index(pkgSrc, "  preFixup")] + "  makeFlags = \"V=1\";\n  pname2 = 1;\n}\n"
	line := func(prefix string) int {
		for i, l := range strings.Split(src, "\n") {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("no line %q", prefix)
		return -1
	}
	in := LensInput{File: parser.Parse([]byte(src))}

	// Before any evaluation.
	for prefix, want := range map[string]string{
		"  postInstall":       "installPhase",
		"  configureFlags":    "configurePhase",
		"  makeFlags":         "buildPhase", // not a "makePhase"
		"  doCheck":           "checkPhase",
		"  pname =":           "",
		"stdenv.mkDerivation": "",
	} {
		got := PhasesAt(in, line(prefix))
		if got.Planned || !slices.Equal(got.Phases, phaserules.StandardNames()) || got.At != want {
			t.Errorf("unplanned, line %q: %+v, want at %q", prefix, got, want)
		}
	}

	// With a plan: its phases, and its placement.
	in.Eval = evalOf(src, planFor(5))
	got := PhasesAt(in, line("  postInstall"))
	if !got.Planned || !slices.Equal(got.Phases, phases) || got.At != "installPhase" {
		t.Errorf("planned, postInstall: %+v", got)
	}
	if got := PhasesAt(in, line("  pname =")); got.At != "" {
		t.Errorf("planned, pname: %+v", got)
	}
}

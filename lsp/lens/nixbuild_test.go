package lens

import (
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
)

// A derivation Nix built itself (recorded by post-build-hook) and of which
// the cache holds no layer: the summary lens and the hovers say so.
func TestBuiltByNixLensAndHover(t *testing.T) {
	end := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	now := end.Add(3*time.Minute + 10*time.Second)
	ev := evalOf(pkgSrc, planFor(0))
	ev.Packages[0].NixBuild = &buildindex.Build{
		Drv: "/nix/store/x-demo-1.0.drv", Name: "demo-1.0", By: buildindex.ByNix, Status: buildindex.StatusBuilt,
		Start: end.Add(-12 * time.Second), End: end, Duration: 12 * time.Second,
		Outputs: map[string]string{"out": "/nix/store/y-demo-1.0"},
	}
	in := LensInput{Eval: ev, Now: now}
	if got := titles(t, pkgSrc, in)["stdenv.mkDerivation"]; got != "built by Nix 3 min ago · 12.0 s · 0/7 phases cached · ▶ build" {
		t.Errorf("summary lens: %q", got)
	}

	f := parser.Parse([]byte(pkgSrc))
	in.File, in.URI = f, "file:///w/pkg.nix"
	h := Hover(in, strings.Index(pkgSrc, "mkDerivation")+2, now)
	if h == nil {
		t.Fatal("no hover on the derivation call")
	}
	for _, want := range []string{"**demo-1.0**", "0/7 phases cached", "built by Nix 3 min ago · 12.0 s, at ",
		"(no layers: next build is cold)", "output `out`: `/nix/store/y-demo-1.0`"} {
		if !strings.Contains(h.Contents.Value, want) {
			t.Errorf("call hover lacks %q:\n%s", want, h.Contents.Value)
		}
	}
	h = Hover(in, strings.Index(pkgSrc, "postInstall")+2, now)
	if h == nil || !strings.Contains(h.Contents.Value, "- built by Nix 3 min ago · 12.0 s (no layers: next build is cold)") {
		t.Errorf("phase hover lacks the Nix build: %v", h)
	}

	// With layers, the summary is the cache's; the hover still tells.
	ev = evalOf(pkgSrc, planFor(5))
	ev.Packages[0].NixBuild = in.Eval.Packages[0].NixBuild
	in = LensInput{Eval: ev, Now: now}
	if got := titles(t, pkgSrc, in)["stdenv.mkDerivation"]; got != "5/7 phases cached · ▶ build" {
		t.Errorf("summary lens with layers: %q", got)
	}
	in.File = f
	h = Hover(in, strings.Index(pkgSrc, "postInstall")+2, now)
	if h == nil || !strings.Contains(h.Contents.Value, "- built by Nix 3 min ago · 12.0 s\n") {
		t.Errorf("phase hover with layers: %v", h)
	}

	// An unsaved edit makes the buffer another derivation: no claim.
	edited := strings.Replace(pkgSrc, "echo hi", "echo ho", 1)
	ev = evalOf(pkgSrc, planFor(0))
	ev.Packages[0].NixBuild = in.Eval.Packages[0].NixBuild
	if got := titles(t, edited, LensInput{Eval: ev, Now: now})["stdenv.mkDerivation"]; strings.Contains(got, "Nix") {
		t.Errorf("summary lens of an edited buffer: %q", got)
	}
}

package target

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// Find in the miniature nixpkgs of testdata, without Nix: which
// attribute a file is, how the summary says it, what the settings change.
func TestFindTarget(t *testing.T) {
	root := filepath.Join(e2etest.Testdata(), "nixpkgs")
	s := NewFinder(zap.NewNop())
	ws := Workspace{Folders: []string{root}, Chosen: map[string]string{}}
	find := func(rel string) Found { return s.Find(context.Background(), ws, filepath.Join(root, rel)) }

	hello := find("pkgs/by-name/he/hello/package.nix")
	if hello.Target.File != root || hello.Target.Attr != "hello" || hello.How != "nixpkgs attribute hello (by-name)" || hello.Choices != nil {
		t.Errorf("by-name package: %+v", hello)
	}
	// An unsaved buffer is called as its attribute calls the file.
	path := filepath.Join(root, "pkgs/by-name/he/hello/package.nix")
	nt, text, unsaved := hello.nixTarget(path, []byte("{ stdenv }: stdenv.mkDerivation { }"))
	if want := "with import \"" + root + "\" { }; callPackage ({ stdenv }: stdenv.mkDerivation { }\n) { }\n"; string(nt.Source) != want || nt.File != path || string(text) != "{ stdenv }: stdenv.mkDerivation { }" || unsaved != "" {
		t.Errorf("unsaved buffer: %q in %s, %q, %q", nt.Source, nt.File, text, unsaved)
	}

	greeter := find("pkgs/tools/greeter/default.nix")
	if greeter.Target.Attr != "greeter" || greeter.Chosen != "greeter" || len(greeter.Choices) != 2 || greeter.Choices[1].How != "nixpkgs attribute greeter-loud (callPackage in all-packages.nix)" {
		t.Errorf("a file called twice: %+v", greeter)
	}
	nt, _, _ = greeter.nixTarget(filepath.Join(root, "pkgs/tools/greeter/default.nix"), []byte("x"))
	if !strings.HasSuffix(string(nt.Source), "\n) { greeting = \"hi\"; }\n") {
		t.Errorf("an unsaved buffer of greeter keeps its callPackage arguments: %q", nt.Source)
	}
	ws.Chosen[filepath.Join(root, "pkgs/tools/greeter/default.nix")] = "greeter-loud"
	if f := find("pkgs/tools/greeter/default.nix"); f.Target.Attr != "greeter-loud" || f.Chosen != "greeter-loud" {
		t.Errorf("the chosen target: %+v", f)
	}

	// A file no attribute calls is evaluated itself.
	if f := find("pkgs/top-level/fixture.nix"); f.Target.File != filepath.Join(root, "pkgs/top-level/fixture.nix") || f.Target.Attr != "" || f.How != "" {
		t.Errorf("a file no attribute calls: %+v", f)
	}
	// The checkout must be inside the workspace folder.
	ws.Folders = []string{filepath.Join(root, "pkgs")}
	if f := find("pkgs/by-name/he/hello/package.nix"); f.Target.File != path || f.How != "" {
		t.Errorf("a checkout above the workspace folder: %+v", f)
	}
	// The settings' target wins, an attr alone applies to the file itself.
	ws.Folders = []string{root}
	ws.Settings = ParseSettings([]byte(`{"target": {"attr": "x"}}`), Settings{})
	if f := find("pkgs/by-name/he/hello/package.nix"); f.Target.File != path || f.Target.Attr != "x" || f.How != "target from settings" {
		t.Errorf("a settings attr: %+v", f)
	}
	ws.Settings = ParseSettings([]byte(`{"target": {}}`), Settings{})
	if f := find("pkgs/by-name/he/hello/package.nix"); f.Target.Attr != "hello" {
		t.Errorf("an empty settings target: %+v", f)
	}
}

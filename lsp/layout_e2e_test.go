package lsp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/lsp/lens"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

// nixpkgsCheckout copies the miniature nixpkgs of testdata/nixpkgs into a
// new workspace, its fixture set salted for this run; it returns the
// checkout's root.
func nixpkgsCheckout(t *testing.T, salt string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "nixpkgs")
	if err := os.CopyFS(root, os.DirFS(filepath.Join(e2etest.Testdata(), "nixpkgs"))); err != nil {
		t.Fatal(err)
	}
	fixture := "import " + syntax.Quote(e2etest.Testdata()) + " { salt = " + syntax.Quote(salt) + "; }\n"
	writeFile(t, filepath.Join(root, "pkgs/top-level/fixture.nix"), fixture)
	return root
}

// evaluated tells whether a summary lens shows an evaluation's outcome,
// a plan or an error.
func evaluated(summary string) bool {
	return strings.Contains(summary, "phases cached") || strings.Contains(summary, "not evaluated")
}

// openFromDisk opens the file at path with its text on disk.
func (c *client) openFromDisk(path string) (protocol.DocumentURI, string) {
	c.t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.open(path, string(src)), string(src)
}

// waitLenses asks for the lenses at every refresh until ok accepts them.
func (c *client) waitLenses(uri protocol.DocumentURI, what string, ok func(map[uint32]string) bool, timeout time.Duration) []protocol.CodeLens {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ls := c.lenses(uri)
		if ok(statusByLine(ls)) {
			return ls
		}
		select {
		case <-c.refreshCh:
		case <-time.After(time.Until(deadline)):
			c.t.Fatalf("lenses never showed %s within %s:\n%s", what, timeout, lensLines(ls))
		}
	}
}

// TestNixpkgsCheckout opens files of a nixpkgs-shaped checkout with no
// settings: a by-name package.nix is evaluated as its attribute (import
// <root> {}, -A hello) and builds, an unsaved postInstall edit invalidates
// installPhase on, and "rebuild from installPhase" builds the buffer; a
// file two attributes of all-packages.nix callPackage offers both, and
// nixlayer.chooseTarget switches.
func TestNixpkgsCheckout(t *testing.T) {
	e2etest.Require(t)
	root := nixpkgsCheckout(t, e2etest.Salt())
	c := startClient(t, t.TempDir())
	c.initialize(root)
	uri, text := c.openFromDisk(filepath.Join(root, "pkgs/by-name/he/hello/package.nix"))
	callLine := lineOf(t, text, "stdenv.mkDerivation")
	ls := c.waitLenses(uri, "an evaluated summary", func(st map[uint32]string) bool {
		return evaluated(st[callLine])
	}, 3*time.Minute)
	st := statusByLine(ls)
	if got, want := st[callLine], "nixpkgs attribute hello (by-name) · 0/9 phases cached · ▶ build"; got != want {
		t.Errorf("summary lens %q, want %q", got, want)
	}
	if got := st[lineOf(t, text, "  postInstall =")]; got != "○ not built yet" {
		t.Errorf("postInstall lens %q\n%s", got, lensLines(ls))
	}
	var targets lens.Targets
	c.mustCall(lens.MethodTargets, map[string]any{"textDocument": map[string]any{"uri": uri}}, &targets)
	if targets.Chosen != "hello" || len(targets.Choices) != 0 {
		t.Errorf("targets of package.nix: %+v", targets)
	}

	// The build is the checkout's attribute.
	want := e2etest.Run(root, nil, "nix-instantiate", root, "-A", "hello")
	var res lens.BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	if !res.OK || len(res.Ran) != 9 || res.Drv != strings.TrimSpace(want.Stdout) {
		t.Fatalf("build: %+v, want the 9 phases of %s", res, want.Stdout)
	}
	c.waitLenses(uri, "cached phases", func(st map[uint32]string) bool {
		return strings.HasPrefix(st[lineOf(t, text, "  postInstall =")], "✓ cached")
	}, time.Minute)

	// An unsaved edit of postInstall, then a rebuild from installPhase of the buffer.
	edited := strings.Replace(text, `output.txt"`, `output.txt"`+"\n    echo edited > \"$out/share/hello/edited\"", 1)
	c.change(uri, 2, edited)
	st = statusByLine(c.lenses(uri))
	if got := st[lineOf(t, edited, "  postInstall =")]; got != "✗ invalidated by postInstall" {
		t.Errorf("after the edit, postInstall: %q", got)
	}
	if got := st[lineOf(t, edited, "stdenv.mkDerivation")]; !strings.HasPrefix(got, "nixpkgs attribute hello (by-name) · ") || !strings.Contains(got, "5/9 phases cached") {
		t.Errorf("summary after the edit %q", got)
	}
	res = lens.BuildResult{}
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdRebuildFrom, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &res)
	if !res.OK || strings.Join(res.Ran, " ") != "installPhase fixupPhase installCheckPhase distPhase" || len(res.Reused) != 5 {
		t.Fatalf("rebuild from installPhase: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(res.Outputs["out"], "share/hello/edited")); err != nil {
		t.Errorf("the rebuild did not build the unsaved buffer: %v", err)
	}

	// A file all-packages.nix calls twice: both are offered, the first is built.
	guri, gtext := c.openFromDisk(filepath.Join(root, "pkgs/tools/greeter/default.nix"))
	gline := lineOf(t, gtext, "stdenv.mkDerivation")
	ls = c.waitLenses(guri, "greeter's summary", func(st map[uint32]string) bool {
		return evaluated(st[gline])
	}, 3*time.Minute)
	if got := statusByLine(ls)[gline]; !strings.HasPrefix(got, "nixpkgs attribute greeter (callPackage in all-packages.nix) · 0/9 phases cached") {
		t.Errorf("greeter's summary %q", got)
	}
	var choose *protocol.CodeLens
	for i, l := range ls {
		if l.Command.Command == lens.CmdChooseTarget {
			choose = &ls[i]
		}
	}
	if choose == nil || choose.Command.Title != "⇄ 2 targets match: choose" || choose.Range.Start.Line != gline {
		t.Fatalf("no lens to choose the target:\n%s", lensLines(ls))
	}
	c.mustCall(lens.MethodTargets, map[string]any{"textDocument": map[string]any{"uri": guri}}, &targets)
	if targets.Chosen != "greeter" || len(targets.Choices) != 2 || targets.Choices[1].Name != "greeter-loud" {
		t.Errorf("targets of greeter: %+v", targets)
	}
	c.drainRefresh()
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdChooseTarget, "arguments": []any{map[string]any{"uri": guri, "target": "greeter-loud"}}}, nil)
	c.waitLenses(guri, "the chosen target", func(st map[uint32]string) bool {
		return strings.HasPrefix(st[gline], "nixpkgs attribute greeter-loud (callPackage in all-packages.nix) · ")
	}, 3*time.Minute)
	var hov protocol.Hover
	c.mustCall("textDocument/hover", map[string]any{"textDocument": map[string]any{"uri": guri}, "position": protocol.Position{Line: gline, Character: 2}}, &hov)
	loud := strings.TrimSpace(e2etest.Run(root, nil, "nix-instantiate", root, "-A", "greeter-loud").Stdout)
	if !strings.Contains(hov.Contents.Value, loud) {
		t.Errorf("the summary hover names another derivation than greeter-loud's %s:\n%s", loud, hov.Contents.Value)
	}
	err := c.call("workspace/executeCommand", map[string]any{"command": lens.CmdChooseTarget, "arguments": []any{map[string]any{"uri": guri, "target": "nope"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "nope is not a target of") {
		t.Errorf("choosing an unknown target: %v", err)
	}
	c.shutdown()
}

// localFlake copies testdata/flake-local (a flake whose packages are
// written in its hello.nix) into a new workspace, with this repository's
// fixtures and a salt; it returns the flake's directory.
func localFlake(t *testing.T, salt string) string {
	t.Helper()
	src := filepath.Join(e2etest.Testdata(), "flake-local")
	dir := filepath.Join(t.TempDir(), "flake")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(src, "flake.nix.in"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"TESTDATA": e2etest.Testdata(), "SALT": salt}
	writeFile(t, filepath.Join(dir, "flake.nix"), os.Expand(string(tmpl), func(k string) string { return vars[k] }))
	return dir
}

// TestFlakeOutputs opens a file of a flake with no settings: the packages
// whose derivation it defines are found by position (hello and
// hello-loud, not multi; default is hello again), the first is evaluated
// and builds as DIR#packages.<system>.hello; an unsaved edit invalidates
// its phases but is not built (a flake is evaluated from disk) until it is
// saved; nixlayer.chooseTarget switches to hello-loud.
func TestFlakeOutputs(t *testing.T) {
	e2etest.Require(t)
	dir := localFlake(t, e2etest.Salt())
	c := startClient(t, t.TempDir())
	c.initialize(dir)
	path := filepath.Join(dir, "hello.nix")
	uri, text := c.openFromDisk(path)
	callLine := lineOf(t, text, "fx.mkDerivation")
	const sys = "packages.x86_64-linux."
	ls := c.waitLenses(uri, "an evaluated summary", func(st map[uint32]string) bool {
		return evaluated(st[callLine])
	}, 3*time.Minute)
	st := statusByLine(ls)
	if got, want := st[callLine], "flake output "+sys+"hello · 0/9 phases cached · ▶ build"; got != want {
		t.Errorf("summary lens %q, want %q\n%s", got, want, lensLines(ls))
	}
	var targets lens.Targets
	c.mustCall(lens.MethodTargets, map[string]any{"textDocument": map[string]any{"uri": uri}}, &targets)
	if targets.Chosen != sys+"hello" || len(targets.Choices) != 2 || targets.Choices[1].Name != sys+"hello-loud" {
		t.Errorf("targets of hello.nix: %+v", targets)
	}

	var res lens.BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	want := e2etest.Run(dir, nil, "nix", "--extra-experimental-features", "nix-command flakes", "eval", "--no-write-lock-file", "--raw", dir+"#"+sys+"hello.drvPath")
	if !res.OK || len(res.Ran) != 9 || res.Drv != strings.TrimSpace(want.Stdout) {
		t.Fatalf("build: %+v, want the 9 phases of %s (%v %s)", res, want.Stdout, want.Err, want.Stderr)
	}
	c.waitLenses(uri, "cached phases", func(st map[uint32]string) bool {
		return strings.HasPrefix(st[lineOf(t, text, "  postInstall =")], "✓ cached")
	}, time.Minute)

	// Unsaved: the lenses say what the edit invalidates; building it needs a save.
	edited := strings.Replace(text, `output.txt"`, `output.txt"`+"\n    echo edited > \"$out/share/hello/edited\"", 1)
	c.change(uri, 2, edited)
	if got := statusByLine(c.lenses(uri))[lineOf(t, edited, "  postInstall =")]; got != "✗ invalidated by postInstall" {
		t.Errorf("after the edit, postInstall: %q", got)
	}
	err := c.call("workspace/executeCommand", map[string]any{"command": lens.CmdRebuildFrom, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "save hello.nix to build this edit") {
		t.Errorf("building an unsaved edit of a flake: %v", err)
	}
	writeFile(t, path, edited)
	c.drainRefresh()
	c.notify("textDocument/didSave", map[string]any{"textDocument": map[string]any{"uri": uri}})
	c.waitRefresh(3 * time.Minute)
	res = lens.BuildResult{}
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdRebuildFrom, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &res)
	if !res.OK || strings.Join(res.Ran, " ") != "installPhase fixupPhase installCheckPhase distPhase" || len(res.Reused) != 5 {
		t.Fatalf("rebuild from installPhase after the save: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(res.Outputs["out"], "share/hello/edited")); err != nil {
		t.Errorf("the rebuild did not build the saved edit: %v", err)
	}

	// The lens's command without a target: the server asks the user.
	c.drainRefresh()
	c.mu.Lock()
	c.pick = "hello-loud"
	c.mu.Unlock()
	var chosen target.Choice
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdChooseTarget, "arguments": []any{map[string]any{"uri": uri}}}, &chosen)
	c.mu.Lock()
	asked := c.asked
	c.mu.Unlock()
	if chosen.Name != sys+"hello-loud" || len(asked) != 1 || !strings.Contains(asked[0], "which target builds") {
		t.Errorf("choosing by asking: %+v, asked %q", chosen, asked)
	}
	c.waitLenses(uri, "the chosen target", func(st map[uint32]string) bool {
		return strings.HasPrefix(st[callLine], "flake output "+sys+"hello-loud · ")
	}, 3*time.Minute)
	// The editor looked and built; nix build writes the lock file, not it.
	if _, err := os.Stat(filepath.Join(dir, "flake.lock")); err == nil {
		t.Errorf("the language server wrote the flake's lock file")
	}
	c.shutdown()
}

// TestBrokenFlake opens a file of a flake that does not evaluate: the
// lenses say so with Nix's error, not the error of the file evaluated
// alone.
func TestBrokenFlake(t *testing.T) {
	e2etest.Require(t)
	dir := localFlake(t, e2etest.Salt())
	writeFile(t, filepath.Join(dir, "flake.nix"), "{ outputs = { self }: { packages.x86_64-linux.hello = import ./hello.nix; } ")
	c := startClient(t, t.TempDir())
	c.initialize(dir)
	uri, text := c.openFromDisk(filepath.Join(dir, "hello.nix"))
	line := lineOf(t, text, "fx.mkDerivation")
	ls := c.waitLenses(uri, "the flake's error", func(st map[uint32]string) bool {
		return strings.Contains(st[line], "not evaluated")
	}, 3*time.Minute)
	if got := statusByLine(ls)[line]; !strings.HasPrefix(got, "flake "+dir+" · ⚠ not evaluated: finding the outputs of the flake that build hello.nix: ") {
		t.Errorf("summary of a file in a broken flake: %q", got)
	}
	if diags := c.diagnostics(uri); len(diags) != 1 || !strings.Contains(diags[0].Message, "syntax error") {
		t.Errorf("diagnostics %+v, want Nix's syntax error", diags)
	}
	c.shutdown()
}

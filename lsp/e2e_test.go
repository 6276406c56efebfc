package lsp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/lsp/lens"
)

// fixturePkg is a package file as a user writes it: hello with 20 files
// and a postInstall (postInstallExtra ends its last line).
func fixturePkg(salt, postInstallExtra string) string {
	return fixturePkgFrom(e2etest.Testdata(), salt, postInstallExtra)
}

// fixturePkgFrom is fixturePkg importing the fixtures at testdata.
func fixturePkgFrom(testdata, salt, postInstallExtra string) string {
	return helloPkg(testdata, salt, "lsphello", `  configureFlags = "--nfiles=20 --funcs-per-file=4";
  enableParallelBuilding = true;
  postInstall = ''
    mkdir -p "$out/share/hello"
    "$out/bin/hello" > "$out/share/hello/output.txt"`+postInstallExtra+`
  '';
  preFixup = "echo fixing";
`)
}

// helloPkg is a package file as a user writes it on the project's fixture
// set at testdata (no nixpkgs here): hello's source with 20 files, named
// pname, with the attributes attrs (lines of Nix).
func helloPkg(testdata, salt, pname, attrs string) string {
	return fmt.Sprintf(`let
  fx = import %s { nfiles = 20; salt = "%s"; };
in
fx.mkDerivation {
  pname = "%s";
  version = "1";
  src = fx.helloSrc;
%s}
`, testdata, salt, pname, attrs)
}

// TestServerEndToEnd drives the real server binary over stdio: lenses
// before a build (all to run), a build with progress and a lens refresh,
// lenses after it (all cached), an unsaved postInstall edit (install and
// later phases invalidated at once), a rebuild from installPhase (only
// those run), showLog, openShell, and a cancelled build.
func TestServerEndToEnd(t *testing.T) {
	e2etest.Require(t)
	salt := e2etest.Salt()
	text := fixturePkg(salt, "")
	dir, cache, path := packageFile(t, "pkg.nix", text)

	// The server's builds leave work to the background, as for users.
	t.Setenv("NIXLAYER_BACKGROUND_LEARN", "1")
	t.Cleanup(func() { waitBackground(t, cache, 5*time.Minute) })
	c := startClient(t, cache)
	c.initialize(dir)
	uri := c.open(path, text)
	c.waitRefresh(2 * time.Minute) // the background evaluation finished

	phaseAttrs := map[string]string{ // attribute → its phase
		"src": "unpackPhase", "configureFlags": "configurePhase", "enableParallelBuilding": "buildPhase",
		"postInstall": "installPhase", "preFixup": "fixupPhase",
	}
	ls := c.lenses(uri)
	st := statusByLine(ls)
	for attr := range phaseAttrs {
		if got := st[lineOf(t, text, "  "+attr+" =")]; got != "○ not built yet" {
			t.Errorf("before the build, %s: lens %q, want ○ not built yet\n%s", attr, got, lensLines(ls))
		}
	}
	summary := st[lineOf(t, text, "fx.mkDerivation")]
	if summary != "0/9 phases cached · ▶ build" {
		t.Errorf("summary lens %q", summary)
	}
	for _, l := range ls {
		if l.Command.Title == "▶ rebuild from installPhase" && l.Range.Start.Line != lineOf(t, text, "  postInstall =") {
			t.Errorf("rebuild lens on line %d", l.Range.Start.Line)
		}
	}

	// Build: progress, a refresh, everything cached afterwards.
	c.drainRefresh()
	t0 := time.Now()
	var res lens.BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	t.Logf("cold build through the server: %.1f s (ran %d phases)", time.Since(t0).Seconds(), len(res.Ran))
	if !res.OK || len(res.Ran) != 9 || !res.InStore {
		t.Fatalf("build result %+v", res)
	}
	c.waitRefresh(10 * time.Second)
	c.mu.Lock()
	kinds, sawInstall, lastPct := []string{}, false, -1.0
	for _, v := range c.progress {
		kinds = append(kinds, fmt.Sprint(v["kind"]))
		if strings.Contains(fmt.Sprint(v["message"]), "installPhase") {
			sawInstall = true
		}
		if p, ok := v["percentage"].(float64); ok && v["kind"] == "report" {
			lastPct = p
		}
	}
	creates := c.creates
	c.mu.Unlock()
	if creates != 1 || kinds[0] != "begin" || kinds[len(kinds)-1] != "end" || !sawInstall || lastPct != 100 {
		t.Errorf("progress: %d creates, kinds %v, installPhase reported %v, last percentage %v", creates, kinds, sawInstall, lastPct)
	}

	ls = c.lenses(uri)
	st = statusByLine(ls)
	for attr := range phaseAttrs {
		if got := st[lineOf(t, text, "  "+attr+" =")]; !strings.HasPrefix(got, "✓ cached · ") {
			t.Errorf("after the build, %s: lens %q, want ✓ cached\n%s", attr, got, lensLines(ls))
		}
	}
	// The cold build left learning its path map to the background: the
	// summary says so while it runs.
	if got := st[lineOf(t, text, "fx.mkDerivation")]; got != "✓ result verified · 9/9 phases cached · ◔ learning the output-path map in the background · ▶ build" &&
		got != "✓ result verified · 9/9 phases cached · ▶ build" { // the learner was quicker
		t.Errorf("summary after build %q", got)
	}

	// Hover on postInstall: status, layer, key attributes.
	var hov protocol.Hover
	pos := protocol.Position{Line: lineOf(t, text, "  postInstall ="), Character: 4}
	c.mustCall("textDocument/hover", map[string]any{"textDocument": map[string]any{"uri": uri}, "position": pos}, &hov)
	for _, want := range []string{"**postInstall** → phase `installPhase`", "✓ cached", "layer `", "key attributes:", "postInstall"} {
		if !strings.Contains(hov.Contents.Value, want) {
			t.Errorf("hover lacks %q:\n%s", want, hov.Contents.Value)
		}
	}

	// An unsaved edit of postInstall: install and later phases at once.
	edited := fixturePkg(salt, "\n    echo changed > \"$out/share/hello/changed\"")
	t1 := time.Now()
	c.change(uri, 2, edited)
	ls = c.lenses(uri)
	took := time.Since(t1)
	t.Logf("didChange → updated lenses: %s", took)
	st = statusByLine(ls)
	for attr, phase := range phaseAttrs {
		got := st[lineOf(t, edited, "  "+attr+" =")]
		after := phase == "installPhase" || phase == "fixupPhase"
		switch {
		case after && got != "✗ invalidated by postInstall":
			t.Errorf("after the edit, %s (%s): %q, want ✗ invalidated by postInstall\n%s", attr, phase, got, lensLines(ls))
		case !after && !strings.HasPrefix(got, "✓ cached"):
			t.Errorf("after the edit, %s (%s): %q, want still cached", attr, phase, got)
		}
	}
	// (Background learning, when it still runs, shows between the two.)
	if got := st[lineOf(t, edited, "fx.mkDerivation")]; !strings.Contains(got, "5/9 phases cached · ") || !strings.HasSuffix(got, " · ▶ build") {
		t.Errorf("summary after the edit %q", got)
	}

	// Rebuild from installPhase (the unsaved buffer is what gets built).
	c.drainRefresh()
	res = lens.BuildResult{}
	t2 := time.Now()
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdRebuildFrom, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &res)
	t.Logf("rebuild from installPhase: %.1f s", time.Since(t2).Seconds())
	wantRan := []string{"installPhase", "fixupPhase", "installCheckPhase", "distPhase"}
	// Right after the cold build the path map is still being learned: the
	// result comes at once, provisional, and is verified in the background;
	// the server tells the client and the summary lens follows.
	if !res.OK || strings.Join(res.Ran, " ") != strings.Join(wantRan, " ") || len(res.Reused) != 5 || res.State != events.StateProvisional {
		t.Fatalf("rebuild from installPhase: %+v", res)
	}
	c.waitRefresh(10 * time.Second)
	st = statusByLine(c.lenses(uri))
	for attr := range phaseAttrs {
		if got := st[lineOf(t, edited, "  "+attr+" =")]; !strings.HasPrefix(got, "✓ cached") {
			t.Errorf("after the rebuild, %s: %q", attr, got)
		}
	}
	if got := st[lineOf(t, edited, "fx.mkDerivation")]; !strings.HasPrefix(got, "◐ result provisional") && !strings.HasPrefix(got, "◐ result verifying") || strings.Count(got, "background") > 1 {
		t.Errorf("summary of a provisional result %q", got)
	}
	if ev := c.waitState(res.Drv, events.StateVerified, 4*time.Minute); ev.Kind != events.EventVerified || !strings.Contains(ev.Message, "without a rebuild") {
		t.Fatalf("verified notification %+v, want one without a rebuild", ev)
	}
	c.waitRefresh(10 * time.Second)
	waitBackground(t, cache, time.Minute) // the learner's record goes as it exits
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = statusByLine(c.lenses(uri))[lineOf(t, edited, "fx.mkDerivation")]; got == "✓ result verified · 9/9 phases cached · ▶ build" {
			break
		}
	}
	if got != "✓ result verified · 9/9 phases cached · ▶ build" {
		t.Errorf("summary once verified and the background work ended %q", got)
	}

	// The tree installPhase left, through the layer requests.
	checkBrowse(t, c, uri, "/build")

	// showLog and openShell.
	var lr lens.LogResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdShowLog, "arguments": []any{map[string]any{"uri": uri, "phase": "build"}}}, &lr)
	if lr.Phase != "buildPhase" || !strings.Contains(lr.Log, "gcc") {
		t.Errorf("showLog buildPhase: phase %q, log %q", lr.Phase, logtail.Lines(lr.Log, 5))
	}
	var sh lens.ShellResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdOpenShell, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &sh)
	if !strings.Contains(sh.Command, "shell --at installPhase") || !strings.Contains(sh.Command, "-f "+path) {
		t.Errorf("openShell: %+v", sh)
	}

	// A build cancelled from the client (window/workDoneProgress/cancel)
	// while buildPhase runs.
	changedFlags := strings.Replace(edited, "--funcs-per-file=4", "--funcs-per-file=5", 1)
	c.change(uri, 3, changedFlags)
	done := make(chan error, 1)
	go func() {
		done <- c.call("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, nil)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	var token any
	for token == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		c.mu.Lock()
		if n := len(c.progress); n > 0 && strings.Contains(fmt.Sprint(c.progress[n-1]["message"]), "buildPhase") {
			token = c.progress[n-1]["_token"]
		}
		c.mu.Unlock()
	}
	if token == nil {
		t.Fatal("the build never reached buildPhase")
	}
	tc := time.Now()
	c.notify("window/workDoneProgress/cancel", map[string]any{"token": token})
	select {
	case err := <-done:
		if errCode(err) != protocol.CodeRequestCancelled {
			t.Errorf("cancelled build answered %v, want RequestCancelled", err)
		}
		t.Logf("cancel → answer: %s", time.Since(tc))
	case <-time.After(30 * time.Second):
		t.Fatal("the cancelled build did not stop within 30 s")
	}
	// The server still answers.
	if ls := c.lenses(uri); len(ls) == 0 {
		t.Error("no lenses after a cancelled build")
	}
	c.shutdown()
}

// TestFailureDiagnostic builds the failing fixture: the failure becomes a
// diagnostic on installPhase with the log tail, and the hover shows it.
func TestFailureDiagnostic(t *testing.T) {
	e2etest.Require(t)
	text := fmt.Sprintf(`let fx = import %s { salt = "%s"; }; in
fx.mkDerivation {
  pname = "lspfail";
  version = "1";
  dontUnpack = true;
  buildPhase = "echo built";
  installPhase = ''
    echo "this install fails on purpose" >&2
    exit 3
  '';
}
`, e2etest.Testdata(), e2etest.Salt())
	dir, cache, path := packageFile(t, "failing.nix", text)
	c := startClient(t, cache)
	c.initialize(dir)
	uri := c.open(path, text)
	c.waitRefresh(time.Minute)
	var res lens.BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	if res.OK || res.FailedPhase != "installPhase" {
		t.Fatalf("result %+v", res)
	}
	c.waitRefresh(10 * time.Second)
	c.mu.Lock()
	diags := c.diags[uri]
	c.mu.Unlock()
	if len(diags) != 1 || diags[0].Range.Start.Line != lineOf(t, text, "  installPhase =") || !strings.Contains(diags[0].Message, "this install fails on purpose") {
		t.Fatalf("diagnostics %+v", diags)
	}
	checkFailed := func(c *client, when string) {
		t.Helper()
		ls := c.lenses(uri)
		st := statusByLine(ls)
		if got := st[lineOf(t, text, "  installPhase =")]; got != "✗ failed · exit 3" {
			t.Errorf("%s: installPhase lens %q\n%s", when, got, lensLines(ls))
		}
		if got := st[lineOf(t, text, "  buildPhase =")]; !strings.HasPrefix(got, "✓ cached · ") {
			t.Errorf("%s: buildPhase (before the failure) lens %q", when, got)
		}
		actions := map[string]string{}
		for _, l := range ls {
			if l.Range.Start.Line == lineOf(t, text, "  installPhase =") {
				actions[l.Command.Title] = l.Command.Command
			}
		}
		if actions["open shell here"] != lens.CmdOpenShell || actions["show log"] != lens.CmdShowLog || actions["✗ failed · exit 3"] != lens.CmdBrowse {
			t.Errorf("%s: the failed phase's actions: %v", when, actions)
		}
		if got := st[lineOf(t, text, "fx.mkDerivation")]; !strings.HasPrefix(got, "5/9 phases cached") {
			t.Errorf("%s: summary %q", when, got)
		}
		var hov protocol.Hover
		c.mustCall("textDocument/hover", map[string]any{"textDocument": map[string]any{"uri": uri}, "position": protocol.Position{Line: lineOf(t, text, "  installPhase ="), Character: 3}}, &hov)
		for _, want := range []string{"exit code 3", "this install fails on purpose", "Last builds:", "failed after"} {
			if !strings.Contains(hov.Contents.Value, want) {
				t.Errorf("%s: hover lacks %q:\n%s", when, want, hov.Contents.Value)
			}
		}
		var lr lens.LogResult
		c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdShowLog, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &lr)
		if !strings.Contains(lr.Log, "this install fails on purpose") {
			t.Errorf("%s: log of the failed phase: %q", when, lr.Log)
		}
	}
	checkFailed(c, "after the build")
	c.shutdown()

	// A new server (the editor restarted) knows the failure from the cache.
	c = startClient(t, cache)
	c.initialize(dir)
	uri = c.open(path, text)
	c.waitRefresh(time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		diags = c.diags[uri]
		c.mu.Unlock()
		if len(diags) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(diags) != 1 || diags[0].Range.Start.Line != lineOf(t, text, "  installPhase =") || !strings.Contains(diags[0].Message, "exit code 3") {
		t.Fatalf("diagnostics after a restart %+v", diags)
	}
	checkFailed(c, "after a restart")

	// The fix: the next build clears the failure.
	fixed := strings.Replace(text, "exit 3", "mkdir -p $out", 1)
	c.change(uri, 2, fixed)
	res = lens.BuildResult{}
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	if !res.OK || len(res.Reused) != 5 {
		t.Fatalf("the fixed build: %+v", res)
	}
	c.mu.Lock()
	diags = c.diags[uri]
	c.mu.Unlock()
	if len(diags) != 0 {
		t.Errorf("diagnostics after the fix: %+v", diags)
	}
	if got := statusByLine(c.lenses(uri))[lineOf(t, fixed, "  installPhase =")]; !strings.HasPrefix(got, "✓ cached") {
		t.Errorf("installPhase after the fix: %q", got)
	}
	c.shutdown()
}

// TestMalformedRequests: bad params, unknown methods and commands, a
// request before initialize and a body that is not JSON all get LSP
// errors; the server keeps serving and exits cleanly. A broken buffer
// still gets lenses for its intact attributes. Files outside the
// workspace are not evaluated.
func TestMalformedRequests(t *testing.T) {
	dir, cache := t.TempDir(), t.TempDir()
	c := startClient(t, cache)

	if err := c.call("textDocument/codeLens", map[string]any{}, nil); errCode(err) != jsonrpc2.ServerNotInitialized {
		t.Errorf("before initialize: %v", err)
	}
	c.initialize(dir)
	// Not JSON at all, written straight into the pipe.
	for _, body := range []string{"{{{{{{{{{", `{"jsonrpc":"2.0","id":77,"method":5}`} {
		if _, err := fmt.Fprintf(c.stdin, "Content-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		method string
		params any
		code   jsonrpc2.Code
	}{
		{"textDocument/codeLens", map[string]any{"textDocument": 5}, jsonrpc2.InvalidParams},
		{"textDocument/codeLens", nil, jsonrpc2.InvalidParams},
		{"textDocument/codeLens", map[string]any{"textDocument": map[string]any{"uri": "file:///nope.nix"}}, jsonrpc2.InvalidParams},
		{"textDocument/hover", []int{1, 2}, jsonrpc2.InvalidParams},
		{"workspace/executeCommand", map[string]any{"command": "nixlayer.frobnicate", "arguments": []any{map[string]any{"uri": "file:///x.nix"}}}, jsonrpc2.InvalidParams},
		{"workspace/executeCommand", map[string]any{"command": lens.CmdRebuildFrom, "arguments": []any{"not an object"}}, jsonrpc2.InvalidParams},
		{"workspace/executeCommand", map[string]any{"command": lens.CmdRebuildFrom, "arguments": []any{map[string]any{"uri": "file:///x.nix"}}}, jsonrpc2.InvalidParams},
		{"workspace/executeCommand", map[string]any{"command": lens.CmdBuild}, jsonrpc2.InvalidParams},
		{"textDocument/definition", map[string]any{}, jsonrpc2.MethodNotFound},
	}
	for _, tc := range cases {
		err := c.call(tc.method, tc.params, nil)
		if errCode(err) != tc.code {
			t.Errorf("%s %v: got %v, want code %d", tc.method, tc.params, err, tc.code)
		}
	}
	// Malformed notifications are ignored.
	c.notify("textDocument/didChange", map[string]any{"textDocument": "x"})
	c.notify("textDocument/didOpen", 42)

	// A broken buffer: unclosed brace and a half-typed string.
	broken := `{ stdenv }:
stdenv.mkDerivation {
  pname = "broken";
  version = "1";
  configureFlags = [ "--enable-foo" ];
  installPhase = ''
    make install
  '';
  postInstall = "echo half-typed
  preFixup = ''
`
	outside := filepath.Join(t.TempDir(), "broken.nix")
	uri := c.open(outside, broken)
	ls := c.lenses(uri)
	st := statusByLine(ls)
	for _, attr := range []string{"configureFlags", "installPhase", "postInstall"} {
		if _, ok := st[lineOf(t, broken, "  "+attr+" =")]; !ok {
			t.Errorf("no lens on %s of the broken buffer:\n%s", attr, lensLines(ls))
		}
	}
	// Outside the workspace: not evaluated, and the lenses say so.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(lensLines(c.lenses(uri)), "not evaluated") {
		time.Sleep(50 * time.Millisecond)
	}
	if s := lensLines(c.lenses(uri)); !strings.Contains(s, "outside the workspace") && !strings.Contains(s, "not evaluated") {
		t.Errorf("lenses of a file outside the workspace:\n%s", s)
	}
	if d := c.diagnostics(uri); len(d) != 1 || !strings.Contains(d[0].Message, "outside the workspace") {
		t.Errorf("diagnostics of a file outside the workspace: %+v", d)
	}
	var res json.RawMessage
	if err := c.call("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res); err == nil {
		t.Error("building a file outside the workspace succeeded")
	}
	c.shutdown()
}

// TestNeovim runs Debian's Neovim 0.7 headless against the real server
// (vim.lsp.start_client + buf_attach_client, buf_request_sync for lenses,
// hover and a command) on a package built beforehand with the CLI.
func TestNeovim(t *testing.T) {
	e2etest.Require(t)
	nvim, err := exec.LookPath("nvim")
	if err != nil {
		t.Skip("nvim not installed")
	}
	text := slowPkg(e2etest.Salt(), "1")
	dir, cache, path := packageFile(t, "pkg.nix", text)
	bin := serverBinary(t)
	if r := e2etest.Run(dir, nil, bin, "build", "--cache", cache, "-Q", "--no-out-link", path); r.Err != nil {
		t.Fatalf("nixlayer build: %v\n%s", r.Err, r.Stderr)
	}
	lua, _ := filepath.Abs("testdata/nvim-test.lua")
	outFile := filepath.Join(t.TempDir(), "out.json")
	t0 := time.Now()
	// The session quits by itself; a hung one is killed after 6 minutes
	// (and its language server's hold on stderr given up 10 s later).
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nvim, "--headless", "-u", lua, path)
	cmd.WaitDelay = 10 * time.Second
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NIXLAYER_BIN="+bin, "NIXLAYER_ROOT="+dir, "NIXLAYER_OUT="+outFile,
		"NIXLAYER_CACHE="+cache, "XDG_STATE_HOME="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); ctx.Err() != nil {
		t.Fatalf("nvim did not finish\n%s", stderr.String())
	} else if err != nil {
		t.Fatalf("nvim: %v\n%s", err, stderr.String())
	}
	t.Logf("neovim session: %s", time.Since(t0))
	data, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatalf("no results from nvim: %v\n%s", err, stderr.String())
	}
	var res struct {
		Lenses    []protocol.CodeLens `json:"lenses"`
		Displayed int                 `json:"displayed"`
		Hover     string              `json:"hover"`
		Shell     string              `json:"shell"`
		Errors    []string            `json:"errors"`
		WaitMS    float64             `json:"wait_ms"`
		Live      []string            `json:"live"`
		Built     lens.BuildResult    `json:"built"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("results %s: %v", data, err)
	}
	t.Logf("lenses after %.0f ms, %d displayed", res.WaitMS, res.Displayed)
	if len(res.Errors) > 0 {
		t.Errorf("errors in nvim: %v", res.Errors)
	}
	st := statusByLine(res.Lenses)
	if got := st[lineOf(t, text, "fx.mkDerivation")]; got != "✓ result verified · 9/9 phases cached · ▶ build" {
		t.Errorf("summary lens in nvim: %q\n%s", got, lensLines(res.Lenses))
	}
	if got := st[lineOf(t, text, "  postInstall =")]; !strings.HasPrefix(got, "✓ cached · ") {
		t.Errorf("postInstall lens in nvim: %q", got)
	}
	if res.Displayed == 0 {
		t.Error("vim.lsp.codelens.get() is empty after refresh()")
	}
	for _, want := range []string{"**postInstall** → phase `installPhase`", "✓ cached", "layer `", "built "} {
		if !strings.Contains(res.Hover, want) {
			t.Errorf("hover in nvim lacks %q:\n%s", want, res.Hover)
		}
	}
	if !strings.Contains(res.Shell, "shell --at installPhase -f "+path) {
		t.Errorf("openShell in nvim: %q", res.Shell)
	}
	// The running phase's lens changed while the build ran.
	t.Logf("preBuild's lens during the build in nvim: %q", res.Live)
	running := regexp.MustCompile(`^⟳ building · \d+ s of ~\d+ s$`)
	var counts []string
	for _, title := range res.Live {
		if running.MatchString(title) {
			counts = append(counts, title)
		}
	}
	if !res.Built.OK || len(counts) < 2 || !strings.HasPrefix(res.Live[len(res.Live)-1], "✓ ") {
		t.Errorf("nvim did not see the running phase's lens change: build %+v, titles %q", res.Built, res.Live)
	}
}

// slowPkg is a package whose buildPhase takes a few seconds (preBuild
// sleeps), so that a client sees it run.
func slowPkg(salt, sleep string) string { return slowPkgFrom(e2etest.Testdata(), salt, sleep) }

// slowPkgFrom is slowPkg importing the fixtures at testdata.
func slowPkgFrom(testdata, salt, sleep string) string {
	return helloPkg(testdata, salt, "lsplive", `  configureFlags = "--nfiles=20";
  preBuild = "sleep `+sleep+`";
  postInstall = ''
    mkdir -p $out/share
  '';
`)
}

// TestLiveLenses follows a build from the client: the running phase's
// lens counts seconds (with an estimate from the last build of the phase
// on the second build), the phases before it turn ✓ one by one, the
// summary says how far the build is, and refreshes are rate-limited.
func TestLiveLenses(t *testing.T) {
	e2etest.Require(t)
	salt := e2etest.Salt()
	text := slowPkg(salt, "3")
	dir, cache, path := packageFile(t, "live.nix", text)
	c := startClient(t, cache)
	c.initialize(dir)
	uri := c.open(path, text)
	c.waitRefresh(2 * time.Minute)

	watch := func(text string) (seen map[string][]string, refreshes int, took time.Duration) {
		t.Helper()
		c.mu.Lock()
		before := c.refreshes
		c.mu.Unlock()
		done := make(chan error, 1)
		t0 := time.Now()
		go func() {
			var res lens.BuildResult
			err := c.call("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
			if err == nil && !res.OK {
				err = fmt.Errorf("build failed: %+v", res)
			}
			done <- err
		}()
		seen = map[string][]string{} // attribute → the distinct lens titles it had
		note := func(key, title string) {
			if l := seen[key]; len(l) == 0 || l[len(l)-1] != title {
				seen[key] = append(seen[key], title)
			}
		}
		lines := map[uint32]string{lineOf(t, text, "fx.mkDerivation"): "summary", lineOf(t, text, "  configureFlags"): "configure",
			lineOf(t, text, "  preBuild"): "build", lineOf(t, text, "  postInstall"): "install"}
		for {
			var err error
			finished := false
			select {
			case err = <-done:
				finished = true
			case <-time.After(150 * time.Millisecond):
			}
			if err != nil {
				t.Fatal(err)
			}
			for line, title := range statusByLine(c.lenses(uri)) {
				if key := lines[line]; key != "" {
					note(key, title)
				}
			}
			if finished {
				c.mu.Lock()
				refreshes = c.refreshes - before
				c.mu.Unlock()
				return seen, refreshes, time.Since(t0)
			}
		}
	}

	seen, refreshes, took := watch(text)
	t.Logf("cold build, %s: %d refreshes; lenses seen: %q", took, refreshes, seen)
	running := regexp.MustCompile(`^⟳ building · \d+ s$`)
	var counts []string
	for _, title := range seen["build"] {
		if running.MatchString(title) {
			counts = append(counts, title)
		}
	}
	if len(counts) < 2 {
		t.Errorf("the running buildPhase lens did not count seconds: %q", seen["build"])
	}
	if !slices.ContainsFunc(seen["configure"], func(s string) bool { return strings.HasPrefix(s, "✓ done · ") }) {
		t.Errorf("configurePhase never turned ✓ during the build: %q", seen["configure"])
	}
	if !slices.ContainsFunc(seen["install"], func(s string) bool { return s == "◌ queued" }) {
		t.Errorf("installPhase was not shown queued: %q", seen["install"])
	}
	if !slices.ContainsFunc(seen["summary"], func(s string) bool {
		return regexp.MustCompile(`^⟳ [3-5]/9 phases done · buildPhase \d+ s$`).MatchString(s)
	}) {
		t.Errorf("the summary did not say how far the build is: %q", seen["summary"])
	}
	if last := seen["summary"][len(seen["summary"])-1]; last != "✓ result verified · 9/9 phases cached · ▶ build" {
		t.Errorf("summary after the build: %q", last)
	}
	// Rate-limited: about one refresh per second, not one per event.
	if max := int(took.Seconds()) + 3; refreshes > max || refreshes < 3 {
		t.Errorf("%d refreshes in %s (want 3..%d)", refreshes, took, max)
	}

	// The next build of the phase shows the last one's time as the estimate.
	edited := slowPkg(salt, "3.5")
	c.change(uri, 2, edited)
	seen, _, _ = watch(edited)
	if !slices.ContainsFunc(seen["build"], func(s string) bool { return regexp.MustCompile(`^⟳ building · \d+ s of ~\d+ s$`).MatchString(s) }) {
		t.Errorf("no estimate on the second build: %q", seen["build"])
	}
	if !slices.ContainsFunc(seen["configure"], func(s string) bool { return strings.HasPrefix(s, "✓ cached · ") }) {
		t.Errorf("configurePhase (reused) not ✓ cached during the rebuild: %q", seen["configure"])
	}

	// Hover on preBuild lists the phase's last builds.
	var hov protocol.Hover
	c.mustCall("textDocument/hover", map[string]any{"textDocument": map[string]any{"uri": uri}, "position": protocol.Position{Line: lineOf(t, edited, "  preBuild"), Character: 4}}, &hov)
	for _, want := range []string{"Last builds:", "ago · ran ", "· preBuild changed", "· after unpackPhase"} {
		if !strings.Contains(hov.Contents.Value, want) {
			t.Errorf("hover lacks %q:\n%s", want, hov.Contents.Value)
		}
	}
	c.shutdown()
}

// checkBrowse opens the tree installPhase left (nixlayer.browse, the layer
// requests), checks what the phase installed and what it changed against
// the phase before it (nixlayer.diff), and that a missing file and an
// unknown layer get their error codes. It returns the layer.
func checkBrowse(t *testing.T, c *client, uri protocol.DocumentURI, buildDir string) string {
	t.Helper()
	var b lens.BrowseResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBrowse, "arguments": []any{map[string]any{"uri": uri, "phase": "install"}}}, &b)
	if b.Layer == "" || b.Phase != "installPhase" || b.State != "cached" || len(b.Roots) != 2 || b.Roots[0] != buildDir {
		t.Fatalf("browse installPhase: %+v", b)
	}
	out := b.Roots[1]
	var root layertree.Files
	c.mustCall(lens.MethodLayerFiles, map[string]any{"layer": b.Layer, "path": "/"}, &root)
	if names := fileNames(root.Entries); names != "build nix" {
		t.Errorf("the tree's root: %s", names)
	}
	var outDir layertree.Files
	c.mustCall(lens.MethodLayerFiles, map[string]any{"layer": b.Layer, "path": out}, &outDir)
	if outDir.Info.Type != layertree.FileDir || fileNames(outDir.Entries) != "bin share" {
		t.Errorf("%s in the tree: %+v", out, outDir)
	}
	var data layertree.Data
	c.mustCall(lens.MethodReadLayerFile, map[string]any{"layer": b.Layer, "path": out + "/share/hello/output.txt"}, &data)
	if !data.EOF || len(data.Data) == 0 || int64(len(data.Data)) != data.Size {
		t.Errorf("output.txt: %+v", data)
	}
	var diff lens.DiffResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdDiff, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &diff)
	added := map[string]bool{}
	for _, ch := range diff.Changes {
		if ch.Kind == "added" {
			added[ch.Path] = true
		}
	}
	if diff.Layer != b.Layer || diff.BasePhase != "checkPhase" || !added[out+"/bin/hello"] || !added[out+"/share/hello/output.txt"] {
		t.Errorf("diff of installPhase: base %s, %d changes, added %v", diff.BasePhase, len(diff.Changes), added)
	}
	if err := c.call(lens.MethodReadLayerFile, map[string]any{"layer": b.Layer, "path": buildDir + "/no-such-file"}, nil); errCode(err) != lens.CodeFileNotFound {
		t.Errorf("a missing file: %v", err)
	}
	if err := c.call(lens.MethodLayerFiles, map[string]any{"layer": strings.Repeat("ab", 32), "path": "/"}, nil); errCode(err) != lens.CodeLayerGone || !strings.Contains(err.Error(), "no longer in the layer cache") {
		t.Errorf("an unknown layer: %v", err)
	}
	return b.Layer
}

func fileNames(fis []layertree.FileInfo) string {
	var names []string
	for _, fi := range fis {
		names = append(names, fi.Name)
	}
	return strings.Join(names, " ")
}

// TestRestrictedMode: a client that does not trust the workspace (VS
// Code's Restricted Mode sends trusted: false) gets lenses from the parser
// and nothing evaluated or built, until it trusts the workspace.
func TestRestrictedMode(t *testing.T) {
	text := fixturePkg(e2etest.Salt(), "")
	dir, cache, path := packageFile(t, "pkg.nix", text)
	c := startClient(t, cache)
	c.initializeWith(dir, map[string]any{"nixlayer": map[string]any{"trusted": false}})
	uri := c.open(path, text)
	c.waitRefresh(time.Minute)
	summary := statusByLine(c.lenses(uri))[lineOf(t, text, "fx.mkDerivation")]
	if !strings.Contains(summary, "not trusted (Restricted Mode)") {
		t.Errorf("summary lens in Restricted Mode: %q", summary)
	}
	err := c.call("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("a build in Restricted Mode: %v", err)
	}
	// Settings without "trusted" (a client resending its target) keep it.
	c.notify("workspace/didChangeConfiguration", map[string]any{"settings": map[string]any{"nixlayer": map[string]any{}}})
	c.waitRefresh(time.Minute)
	if s := statusByLine(c.lenses(uri))[lineOf(t, text, "fx.mkDerivation")]; !strings.Contains(s, "not trusted") {
		t.Errorf("settings without trusted made the workspace trusted: %q", s)
	}
	if !e2etest.Enabled() {
		c.shutdown()
		return
	}
	// Trusted now: evaluated, with a plan.
	c.notify("workspace/didChangeConfiguration", map[string]any{"settings": map[string]any{"nixlayer": map[string]any{"trusted": true}}})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := statusByLine(c.lenses(uri))[lineOf(t, text, "fx.mkDerivation")]
		if s == "0/9 phases cached · ▶ build" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not evaluated once trusted: %q", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.shutdown()
}

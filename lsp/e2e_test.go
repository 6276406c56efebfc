package lsp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/runner"
)

// fixturePkg is a package file as a user writes it: it imports the
// project's fixture set (no nixpkgs here) and builds hello with 20 files.
func fixturePkg(salt, postInstallExtra string) string {
	return fixturePkgFrom(e2etest.Testdata(), salt, postInstallExtra)
}

// fixturePkgFrom is fixturePkg importing the fixtures at testdata.
func fixturePkgFrom(testdata, salt, postInstallExtra string) string {
	return fmt.Sprintf(`let
  fx = import %s { nfiles = 20; salt = "%s"; };
in
fx.mkDerivation {
  pname = "lsphello";
  version = "1";
  src = fx.helloSrc;
  configureFlags = "--nfiles=20 --funcs-per-file=4";
  enableParallelBuilding = true;
  postInstall = ''
    mkdir -p "$out/share/hello"
    "$out/bin/hello" > "$out/share/hello/output.txt"%s
  '';
  preFixup = "echo fixing";
}
`, testdata, salt, postInstallExtra)
}

// TestServerEndToEnd drives the real server binary over stdio: lenses
// before a build (all to run), a build with progress and a lens refresh,
// lenses after it (all cached), an unsaved postInstall edit (install and
// later phases invalidated at once), a rebuild from installPhase (only
// those run), showLog, openShell, and a cancelled build.
func TestServerEndToEnd(t *testing.T) {
	e2etest.Require(t)
	dir, cache := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "pkg.nix")
	salt := e2etest.Salt()
	text := fixturePkg(salt, "")
	writeFile(t, path, text)

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
	var res BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
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
	if got := st[lineOf(t, text, "fx.mkDerivation")]; got != "✓ result verified · 9/9 phases cached · ▶ build" {
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
	if got := st[lineOf(t, edited, "fx.mkDerivation")]; !strings.HasSuffix(got, "5/9 phases cached · ▶ build") {
		t.Errorf("summary after the edit %q", got)
	}

	// Rebuild from installPhase (the unsaved buffer is what gets built).
	c.drainRefresh()
	res = BuildResult{}
	t2 := time.Now()
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdRebuildFrom, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &res)
	t.Logf("rebuild from installPhase: %.1f s", time.Since(t2).Seconds())
	wantRan := []string{"installPhase", "fixupPhase", "installCheckPhase", "distPhase"}
	// Right after the cold build the path map is still being learned: the
	// result comes at once, provisional, and is verified in the background;
	// the server tells the client and the summary lens follows.
	if !res.OK || strings.Join(res.Ran, " ") != strings.Join(wantRan, " ") || len(res.Reused) != 5 || res.State != runner.StateProvisional {
		t.Fatalf("rebuild from installPhase: %+v", res)
	}
	c.waitRefresh(10 * time.Second)
	st = statusByLine(c.lenses(uri))
	for attr := range phaseAttrs {
		if got := st[lineOf(t, edited, "  "+attr+" =")]; !strings.HasPrefix(got, "✓ cached") {
			t.Errorf("after the rebuild, %s: %q", attr, got)
		}
	}
	if got := st[lineOf(t, edited, "fx.mkDerivation")]; !strings.HasPrefix(got, "◐ result provisional") && !strings.HasPrefix(got, "◐ result verifying") {
		t.Errorf("summary of a provisional result %q", got)
	}
	if ev := c.waitState(res.Drv, runner.StateVerified, 4*time.Minute); ev.Kind != runner.EventVerified || !strings.Contains(ev.Message, "without a rebuild") {
		t.Fatalf("verified notification %+v, want one without a rebuild", ev)
	}
	c.waitRefresh(10 * time.Second)
	if got := statusByLine(c.lenses(uri))[lineOf(t, edited, "fx.mkDerivation")]; !strings.HasPrefix(got, "✓ result verified") {
		t.Errorf("summary once verified %q", got)
	}

	// showLog and openShell.
	var lr LogResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdShowLog, "arguments": []any{map[string]any{"uri": uri, "phase": "build"}}}, &lr)
	if lr.Phase != "buildPhase" || !strings.Contains(lr.Log, "gcc") {
		t.Errorf("showLog buildPhase: phase %q, log %q", lr.Phase, logtail.Lines(lr.Log, 5))
	}
	var sh ShellResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdOpenShell, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &sh)
	if !strings.Contains(sh.Command, "shell --at installPhase") || !strings.Contains(sh.Command, "-f "+path) {
		t.Errorf("openShell: %+v", sh)
	}

	// A build cancelled from the client (window/workDoneProgress/cancel)
	// while buildPhase runs.
	changedFlags := strings.Replace(edited, "--funcs-per-file=4", "--funcs-per-file=5", 1)
	c.change(uri, 3, changedFlags)
	done := make(chan error, 1)
	go func() {
		done <- c.call("workspace/executeCommand", map[string]any{"command": CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, nil)
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
	dir, cache := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "failing.nix")
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
	writeFile(t, path, text)
	c := startClient(t, cache)
	c.initialize(dir)
	uri := c.open(path, text)
	c.waitRefresh(time.Minute)
	var res BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
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
	st := statusByLine(c.lenses(uri))
	if got := st[lineOf(t, text, "  installPhase =")]; got != "✗ failed in the last build" {
		t.Errorf("installPhase lens %q", got)
	}
	var hov protocol.Hover
	c.mustCall("textDocument/hover", map[string]any{"textDocument": map[string]any{"uri": uri}, "position": protocol.Position{Line: lineOf(t, text, "  installPhase ="), Character: 3}}, &hov)
	if !strings.Contains(hov.Contents.Value, "exit code 3") || !strings.Contains(hov.Contents.Value, "this install fails on purpose") {
		t.Errorf("hover:\n%s", hov.Contents.Value)
	}
	var lr LogResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdShowLog, "arguments": []any{map[string]any{"uri": uri, "phase": "installPhase"}}}, &lr)
	if !strings.Contains(lr.Log, "this install fails on purpose") {
		t.Errorf("log of the failed phase: %q", lr.Log)
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
		{"workspace/executeCommand", map[string]any{"command": CmdRebuildFrom, "arguments": []any{"not an object"}}, jsonrpc2.InvalidParams},
		{"workspace/executeCommand", map[string]any{"command": CmdRebuildFrom, "arguments": []any{map[string]any{"uri": "file:///x.nix"}}}, jsonrpc2.InvalidParams},
		{"workspace/executeCommand", map[string]any{"command": CmdBuild}, jsonrpc2.InvalidParams},
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
	c.mu.Lock()
	d := c.diags[uri]
	c.mu.Unlock()
	if len(d) != 1 || !strings.Contains(d[0].Message, "outside the workspace") {
		t.Errorf("diagnostics of a file outside the workspace: %+v", d)
	}
	var res json.RawMessage
	if err := c.call("workspace/executeCommand", map[string]any{"command": CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res); err == nil {
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
	dir, cache := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "pkg.nix")
	text := fixturePkg(e2etest.Salt(), "")
	writeFile(t, path, text)
	bin := serverBinary(t)
	if r := e2etest.Run(dir, nil, bin, "build", "--cache", cache, "-Q", "--no-out-link", path); r.Err != nil {
		t.Fatalf("nixlayer build: %v\n%s", r.Err, r.Stderr)
	}
	lua, _ := filepath.Abs("testdata/nvim-test.lua")
	outFile := filepath.Join(t.TempDir(), "out.json")
	t0 := time.Now()
	cmd := exec.Command(nvim, "--headless", "-u", lua, path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NIXLAYER_BIN="+bin, "NIXLAYER_ROOT="+dir, "NIXLAYER_OUT="+outFile,
		"NIXLAYER_CACHE="+cache, "XDG_STATE_HOME="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("nvim: %v\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("nvim did not finish\n%s", stderr.String())
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
}

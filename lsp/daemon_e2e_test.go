package lsp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// Issue 15: the language server of an unprivileged user (the editor runs
// as the user) builds through nixlayer daemon: the build command reports
// progress, registers the exact result in the store (Nix's own rebuild
// agrees) and the lenses show the cache afterwards.
func TestServerThroughDaemon(t *testing.T) {
	e2etest.Require(t)
	d := e2etest.StartDaemon(t, serverBinary(t))
	user := e2etest.TestUser
	dir := d.WorkDir(t, user)
	path := filepath.Join(dir, "pkg.nix")
	text := fixturePkgFrom(d.Testdata, e2etest.Salt(), "")
	writeFile(t, path, text)
	a := e2etest.LookupAccount(t, user)
	os.Chown(path, a.UID, a.GID)

	cmd := d.Command(context.Background(), t, user, dir, d.Bin, "lsp", "--debounce", "50ms", "-v")
	c := startClientCmd(t, cmd)
	c.initialize(dir)
	uri := c.open(path, text)
	c.waitRefresh(2 * time.Minute)
	if got := statusByLine(c.lenses(uri))[lineOf(t, text, "fx.mkDerivation")]; got != "0/9 phases cached · ▶ build" {
		t.Fatalf("summary lens before the build %q\n%s", got, lensLines(c.lenses(uri)))
	}
	c.drainRefresh()
	var res BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	if !res.OK || len(res.Ran) != 9 || !res.InStore || !res.Verified {
		t.Fatalf("build through the daemon: %+v\n%s", res, c.stderr.String())
	}
	c.mu.Lock()
	reports := len(c.progress)
	c.mu.Unlock()
	if reports < 10 {
		t.Errorf("only %d progress reports came through the daemon", reports)
	}
	out := res.Outputs["out"]
	if exec.Command("nix-store", "--check-validity", out).Run() != nil {
		t.Fatalf("%s is not registered", out)
	}
	check := exec.Command("nix-build", "--no-out-link", "--check", "--option", "build-hook", "", "-E", "import "+path)
	if msg, err := check.CombinedOutput(); err != nil {
		t.Fatalf("nix-build --check of the editor's build: %v\n%s", err, msg)
	}
	c.waitRefresh(10 * time.Second)
	if got := statusByLine(c.lenses(uri))[lineOf(t, text, "fx.mkDerivation")]; got != "9/9 phases cached · ▶ build" {
		t.Errorf("summary lens after the build %q", got)
	}
	c.shutdown()
}

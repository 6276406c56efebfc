package lsp

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/lsp/lens"
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
	salt := e2etest.Salt()
	text := fixturePkgFrom(d.Testdata, salt, "")
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
	var res lens.BuildResult
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
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
	if got := statusByLine(c.lenses(uri))[lineOf(t, text, "fx.mkDerivation")]; got != "✓ result verified · 9/9 phases cached · ▶ build" {
		t.Errorf("summary lens after the build %q", got)
	}

	// Issue 16: the user's editor reads the tree a phase left, through the
	// daemon (no mount, no rights on the cache).
	layer := checkBrowse(t, c, uri, "/build")

	// Reading works while another user's build runs.
	other := d.WorkDir(t, e2etest.OtherUser)
	otherPath := filepath.Join(other, "slow.nix")
	writeFile(t, otherPath, slowPkgFrom(d.Testdata, e2etest.Salt(), "8"))
	o := e2etest.LookupAccount(t, e2etest.OtherUser)
	os.Chown(otherPath, o.UID, o.GID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ob := d.Command(ctx, t, e2etest.OtherUser, other, d.Bin, "build", "-Q", "--progress=json", "--no-out-link", otherPath)
	progress, err := ob.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(); err != nil {
		t.Fatal(err)
	}
	inBuildPhase := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(progress)
		for sc.Scan() {
			var ev events.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Kind == events.EventStart && ev.Phase == "buildPhase" {
				close(inBuildPhase)
				break
			}
		}
		io.Copy(io.Discard, progress)
	}()
	select {
	case <-inBuildPhase:
	case <-time.After(3 * time.Minute):
		t.Fatal("the other user's build never reached buildPhase")
	}
	for i := 0; i < 5; i++ {
		var data layertree.Data
		c.mustCall(lens.MethodReadLayerFile, map[string]any{"layer": layer, "path": res.Outputs["out"] + "/share/hello/output.txt"}, &data)
		if len(data.Data) == 0 {
			t.Fatalf("read %d during another build: %+v", i, data)
		}
	}
	if ob.ProcessState != nil {
		t.Error("the other build ended before the reads: the test proves nothing")
	}
	if err := ob.Wait(); err != nil {
		t.Fatalf("the other user's build: %v", err)
	}

	// A newer build of the package, then gc: the layer browsed before is
	// gone, and reading it says so.
	c.change(uri, 2, fixturePkgFrom(d.Testdata, salt, "\n    echo v2 > $out/share/v2"))
	c.mustCall("workspace/executeCommand", map[string]any{"command": lens.CmdBuild, "arguments": []any{map[string]any{"uri": uri}}}, &res)
	if !res.OK {
		t.Fatalf("the second build: %+v", res)
	}
	// The daemon keeps a layer it read mounted for a few seconds (in use:
	// gc keeps it); gc once that has passed.
	waitFor(t, time.Minute, func() bool {
		r := e2etest.Run(dir, nil, d.Bin, "gc", "--json", "--cache", d.Cache)
		var collected gc.Result
		if r.Err != nil || json.Unmarshal([]byte(r.Stdout), &collected) != nil {
			t.Fatalf("gc: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
		return slices.ContainsFunc(collected.Removed, func(l gc.Removed) bool { return l.ID == layer })
	})
	err = c.call(lens.MethodReadLayerFile, map[string]any{"layer": layer, "path": "/build"}, nil)
	if errCode(err) != lens.CodeLayerGone || !strings.Contains(err.Error(), "no longer in the layer cache (removed by nixlayer gc") {
		t.Errorf("reading a layer gc removed: %v", err)
	}
	c.shutdown()
}

func waitFor(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s", timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

package lsp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// TestServerShowsNixBuild: a package nix-build built with nixlayer's
// post-build-hook (and no layers) gets "built by Nix … ago · …" on its
// summary lens and in the hover of its derivation call.
func TestServerShowsNixBuild(t *testing.T) {
	e2etest.Require(t)
	text := fixturePkg(e2etest.Salt(), "")
	dir, cache, path := packageFile(t, "pkg.nix", text)

	hooks := t.TempDir()
	post := filepath.Join(hooks, "post-build-hook")
	writeFile(t, post, "#!/bin/sh\nexec '"+serverBinary(t)+"' post-build-hook\n")
	if err := os.Chmod(post, 0o755); err != nil {
		t.Fatal(err)
	}
	r := e2etest.Run(dir, []string{"NIXLAYER_CACHE=" + cache}, "nix-build", "--no-out-link", "--option", "post-build-hook", post, path)
	if r.Err != nil {
		t.Fatalf("nix-build: %v\n%s", r.Err, r.Stderr)
	}

	c := startClient(t, cache)
	c.initialize(dir)
	uri := c.open(path, text)
	c.waitRefresh(2 * time.Minute)
	call := lineOf(t, text, "fx.mkDerivation")
	summary := statusByLine(c.lenses(uri))[call]
	if !strings.HasPrefix(summary, "built by Nix ") || !strings.HasSuffix(summary, " · 0/9 phases cached · ▶ build") {
		t.Errorf("summary lens %q", summary)
	}
	var hov protocol.Hover
	c.mustCall("textDocument/hover", map[string]any{"textDocument": map[string]any{"uri": uri},
		"position": protocol.Position{Line: call, Character: 5}}, &hov)
	for _, want := range []string{"built by Nix ", "(no layers: next build is cold)", "output `out`: `" + e2etest.Lines(r.Stdout)[0] + "`"} {
		if !strings.Contains(hov.Contents.Value, want) {
			t.Errorf("hover lacks %q:\n%s", want, hov.Contents.Value)
		}
	}
	c.shutdown()
}

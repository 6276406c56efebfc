package runner_test

import (
	"fmt"
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// nixlayerBin is the CLI built once for the end-to-end tests of this
// package (they drive it like a user: in tmux, with mount, skopeo).
var nixlayerBin string

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if !e2etest.Enabled() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "nixlayer-runner-bin-")
	if err != nil {
		panic(err)
	}
	if nixlayerBin, err = e2etest.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, "building nixlayer:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

package runner_test

import (
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
	os.Exit(e2etest.Main(m, &nixlayerBin))
}

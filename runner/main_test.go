package runner_test

import (
	"testing"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// nixlayerBin is the CLI built once for the end-to-end tests of this
// package (they drive it like a user: in tmux, with mount, skopeo).
var nixlayerBin string

func TestMain(m *testing.M) { e2etest.Main(m, &nixlayerBin) }

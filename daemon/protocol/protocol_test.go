package protocol

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/runner"
)

// The errors a face tells apart survive the socket: a failed phase, a
// layer gc removed, a path that is not in a layer's tree.
func TestErrorsCrossTheSocket(t *testing.T) {
	var gone *layertree.GoneError
	back := ClientError(WireError(&layertree.GoneError{Layer: "0123456789abcdef"}))
	if !errors.As(back, &gone) || gone.Layer != "0123456789abcdef" {
		t.Errorf("layer gone came back as %#v", back)
	}
	back = ClientError(WireError(fmt.Errorf("/build/x: %w", fs.ErrNotExist)))
	if !errors.Is(back, fs.ErrNotExist) || back.Error() != "/build/x: file does not exist" {
		t.Errorf("not found came back as %#v (%v)", back, back)
	}
	var pe *runner.PhaseError
	back = ClientError(WireError(&runner.PhaseError{Phase: "installPhase", Exit: 3}))
	if !errors.As(back, &pe) || pe.Exit != 3 {
		t.Errorf("phase error came back as %#v", back)
	}
}

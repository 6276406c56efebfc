package syntax

import (
	"strings"
	"testing"
)

func TestLineIndex(t *testing.T) {
	src := []byte("a\nxé😀b\n")
	x := NewLineIndex(src)
	b := strings.IndexByte(string(src), 'b')
	want := Position{Offset: b, Line: 1, Column: 7, UTF16Column: 4}
	if got := x.Position(b); got != want {
		t.Errorf("Position = %+v, want %+v", got, want)
	}
	if got := x.Offset(1, 4); got != b {
		t.Errorf("Offset(1, 4) = %d, want %d", got, b)
	}
	if got := x.Offset(1, 3); got != b-4 {
		t.Errorf("Offset inside a surrogate pair = %d, want %d (before the emoji)", got, b-4)
	}
	if got := x.Offset(0, 99); got != 1 {
		t.Errorf("Offset past line end = %d, want 1", got)
	}
	if got := x.Position(len(src)); got.Line != 2 || got.Column != 0 {
		t.Errorf("Position(end) = %+v", got)
	}
}

package nixstore

import (
	"crypto/sha256"
	"testing"
)

func TestFormatHash(t *testing.T) {
	sum := sha256.Sum256([]byte("hi"))
	if got, want := FormatHash(sum), "sha256:8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"; got != want {
		t.Errorf("FormatHash = %s, want %s", got, want)
	}
}

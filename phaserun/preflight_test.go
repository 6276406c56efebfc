package phaserun

import (
	"context"
	"testing"
)

// The hook calls Preflight before every build it accepts: once bubblewrap
// is known to work, it costs a few stat calls.
func BenchmarkPreflightCached(b *testing.B) {
	dir := b.TempDir()
	if err := Preflight(context.Background(), dir); err != nil {
		b.Skip(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := Preflight(context.Background(), dir); err != nil {
			b.Fatal(err)
		}
	}
}

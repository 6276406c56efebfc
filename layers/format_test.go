package layers

import "testing"

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{-1: "size unknown", 0: "0.0 KiB", 1536: "1.5 KiB", 3 << 20: "3.0 MiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

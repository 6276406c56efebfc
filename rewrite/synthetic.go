package rewrite

import (
	"path/filepath"
	"strings"
)

// nixBase32 is the alphabet of store path hashes.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// SyntheticPath returns a store path of the same length and name as p for
// the second build Learn compares with. Its hash differs from p's at every
// index, so every hash character, fragments included, shows up as a
// differing byte; and it uses each character at most once, so a single
// differing byte names its hash position without ambiguity.
func SyntheticPath(p string) string {
	h := hashPart(p)
	at := len(p) - len(filepath.Base(p))
	if len(h) == 0 || len(h) > len(nixBase32) {
		return p
	}
	// Odd strides make permutations of the alphabet; each index rules
	// out one rotation per stride, so one survives for real hashes.
	for stride := 1; stride < len(nixBase32); stride += 2 {
		for rot := 0; rot < len(nixBase32); rot++ {
			var b strings.Builder
			for k := range h {
				c := nixBase32[(stride*k+rot)%len(nixBase32)]
				if c == h[k] {
					break
				}
				b.WriteByte(c)
			}
			if b.Len() == len(h) {
				return p[:at] + b.String() + p[at+len(h):]
			}
		}
	}
	// A hash like 000…0 defeats every permutation: differ at each index
	// and repeat as few characters as possible.
	var b strings.Builder
	for k := range h {
		c := nixBase32[k%len(nixBase32)]
		if c == h[k] {
			c = nixBase32[(k+len(nixBase32)/2)%len(nixBase32)]
		}
		b.WriteByte(c)
	}
	return p[:at] + b.String() + p[at+len(h):]
}

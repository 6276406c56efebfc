package learnmap

import (
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/rewrite"
)

// SyntheticPath returns a store path of the same length and name as p for
// the second build Learn compares with. Its hash differs at every index from
// p's and from the hash of every path in avoid (the other output paths a
// chain's layers were built with, e.g. older layers of another derivation
// that a later one reused), so every hash character, fragments included,
// shows up as a differing byte whichever layer is compared; and it uses
// each character at most once where it can, so a single differing byte
// names its hash position without ambiguity.
func SyntheticPath(p string, avoid ...string) string {
	h := rewrite.HashPart(p)
	at := len(p) - len(filepath.Base(p))
	if len(h) == 0 || len(h) > len(nixbase32.Alphabet) {
		return p
	}
	hashes := []string{h}
	for _, a := range avoid {
		if ha := rewrite.HashPart(a); len(ha) == len(h) {
			hashes = append(hashes, ha)
		}
	}
	taken := func(k int, c byte) bool {
		for _, x := range hashes {
			if x[k] == c {
				return true
			}
		}
		return false
	}
	// Odd strides make permutations of the alphabet; each hash rules out
	// one rotation per stride and index, so one survives for real hashes.
	for stride := 1; stride < len(nixbase32.Alphabet); stride += 2 {
		for rot := 0; rot < len(nixbase32.Alphabet); rot++ {
			var b strings.Builder
			for k := range h {
				c := nixbase32.Alphabet[(stride*k+rot)%len(nixbase32.Alphabet)]
				if taken(k, c) {
					break
				}
				b.WriteByte(c)
			}
			if b.Len() == len(h) {
				return p[:at] + b.String() + p[at+len(h):]
			}
		}
	}
	// Hashes like 000…0, or many to avoid, defeat every permutation:
	// differ at each index and repeat as few characters as possible.
	used := map[byte]bool{}
	var b strings.Builder
	for k := range h {
		pick := byte(0)
		for i := range len(nixbase32.Alphabet) {
			c := nixbase32.Alphabet[(k+i)%len(nixbase32.Alphabet)]
			if taken(k, c) {
				continue
			}
			if pick == 0 || !used[c] && used[pick] {
				pick = c
			}
			if !used[c] {
				break
			}
		}
		if pick == 0 { // every character is taken at k: nothing can differ
			pick = nixbase32.Alphabet[k%len(nixbase32.Alphabet)]
		}
		used[pick] = true
		b.WriteByte(pick)
	}
	return p[:at] + b.String() + p[at+len(h):]
}

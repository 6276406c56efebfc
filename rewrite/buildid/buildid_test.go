package buildid

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestLLDFastChunkHash(t *testing.T) {
	// Reference values of XXH64 with seed 0 (the hand-written XXH64 that
	// xxhash.Sum64 replaced gave the same), as LLD stores them.
	for in, want := range map[string]uint64{
		"":    0xef46db3751d8e999,
		"a":   0xd24ec4f1a98c6e5b,
		"abc": 0x44bc2cf5ad770999,
		"Nobody inspects the spammish repetition": 0xfbcea83c8a378bf1,
	} {
		if got := lldFastChunkHash([]byte(in)); !bytes.Equal(got, binary.LittleEndian.AppendUint64(nil, want)) {
			t.Errorf("lldFastChunkHash(%q) = %x, want XXH64 %#x little-endian", in, got, want)
		}
	}
}

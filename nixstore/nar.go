package nixstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/nix-community/go-nix/pkg/nar"
	"go.podman.io/storage/pkg/ioutils"
)

// NARHash serializes path (a file, directory or symlink on the host; it
// need not be in the store) as a Nix archive and returns the archive's
// SHA-256 and size: the values `nix-store --dump PATH | sha256sum` and
// `nix-hash --type sha256 PATH` give and that Nix registers.
func NARHash(path string) (sum [32]byte, size uint64, err error) {
	h := sha256.New()
	cw := ioutils.NewWriteCounter(h)
	if err := DumpNAR(cw, path); err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, uint64(cw.Count), nil
}

// FormatHash renders a SHA-256 digest as "sha256:<hex>", the form
// nix-store --register-validity accepts.
func FormatHash(sum [32]byte) string {
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DumpNAR writes the NAR serialization of path to w, like
// nix-store --dump (go-nix's serializer: entries sorted by name, regular
// files executable when their owner-execute bit is set; devices, sockets
// and fifos are an error).
func DumpNAR(w io.Writer, path string) error {
	if err := nar.DumpPath(w, path); err != nil {
		return fmt.Errorf("NAR serialization of %s: %w", path, err)
	}
	return nil
}

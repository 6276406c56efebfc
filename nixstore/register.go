package nixstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// PathInfo is what Register records about a store path.
type PathInfo struct {
	Path       string
	NARHash    [32]byte
	NARSize    uint64
	Deriver    string // .drv path, or ""
	References []string
}

// Register makes paths valid with one
// `nix-store --register-validity --hash-given` call. Per path Nix reads
// the lines: path, sha256:<hex> NAR hash, NAR size, deriver (may be
// empty), number of references, the references. Already valid paths are
// left unchanged by Nix. The caller must have written the trees with
// canonical metadata and correct hashes: Nix does not check them.
func Register(ctx context.Context, infos []PathInfo) error {
	if len(infos) == 0 {
		return nil
	}
	var b strings.Builder
	var names []string
	for _, in := range infos {
		if !IsStorePath(in.Path) {
			return fmt.Errorf("registering %s: not a store path under %s", in.Path, StoreDir())
		}
		if in.Deriver != "" && !IsStorePath(in.Deriver) {
			return fmt.Errorf("registering %s: deriver %s is not a store path", in.Path, in.Deriver)
		}
		refs := append([]string(nil), in.References...)
		sort.Strings(refs)
		refs = slices.Compact(refs)
		for _, r := range refs {
			if !IsStorePath(r) {
				return fmt.Errorf("registering %s: reference %s is not a store path", in.Path, r)
			}
		}
		for _, field := range []string{in.Path, FormatHash(in.NARHash), strconv.FormatUint(in.NARSize, 10), in.Deriver, strconv.Itoa(len(refs))} {
			b.WriteString(field)
			b.WriteByte('\n')
		}
		for _, r := range refs {
			b.WriteString(r)
			b.WriteByte('\n')
		}
		names = append(names, in.Path)
	}
	if _, err := run(ctx, strings.NewReader(b.String()), "nix-store", "--register-validity", "--hash-given"); err != nil {
		return fmt.Errorf("registering %s as valid: %w (are you root or the Nix daemon's user?)", strings.Join(names, " "), err)
	}
	return nil
}

// FormatHash renders a SHA-256 digest as "sha256:<hex>", the form
// nix-store --register-validity accepts.
func FormatHash(sum [32]byte) string {
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Package fsname names the files nixlayer creates for a string it does not
// choose (a package's pname, a derivation's name): the name is a digest of
// the string, so nothing a user writes into a derivation ever becomes part
// of a path root creates (`../`, `/`, NUL, a name too long for the
// filesystem). The readable string belongs inside the file.
package fsname

import (
	"crypto/sha256"
	"encoding/hex"
)

// For is the file name for s among the files of one kind: kind (a constant
// of the caller's, such as "drv" or "learn"), a dash and 32 hex digits of
// SHA-256(s).
func For(kind, s string) string {
	sum := sha256.Sum256([]byte(s))
	return kind + "-" + hex.EncodeToString(sum[:16])
}

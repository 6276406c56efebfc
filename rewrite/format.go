package rewrite

import (
	"bytes"
	"debug/elf"
)

// Format is a file format nixlayer recognizes by its magic bytes: the
// containers whose bytes depend on the paths in ways no byte map follows,
// and ELF.
type Format string

const (
	FormatGzip  Format = "gzip"
	FormatBzip2 Format = "bzip2"
	FormatXZ    Format = "xz"
	FormatZstd  Format = "zstd"
	FormatZip   Format = "zip"
	FormatAr    Format = "ar" // Unix archives: static libraries
	FormatELF   Format = "ELF"
)

// magics are the leading bytes of each format.
var magics = []struct {
	format Format
	magic  string
}{
	{FormatGzip, "\x1f\x8b"},
	{FormatBzip2, "BZh"},
	{FormatXZ, "\xfd7zXZ\x00"},
	{FormatZstd, "\x28\xb5\x2f\xfd"},
	{FormatZip, "PK\x03\x04"},
	{FormatAr, "!<arch>\n"},
	{FormatELF, elf.ELFMAG},
}

// FormatOf names the format data starts with, "" when it is none of them.
func FormatOf(data []byte) Format {
	for _, m := range magics {
		if bytes.HasPrefix(data, []byte(m.magic)) {
			return m.format
		}
	}
	return ""
}

package layers

import (
	"archive/tar"
	"fmt"
	"io"
)

// EachTarEntry reads a layer tar (what Diff returns, or a layer blob once
// decompressed) entry by entry: fn gets each header and, to read, that
// entry's content. The walk ends at the end of the archive, at an error
// reading it (wrapped as "reading layer tar"), or at fn's first error
// (returned as is). The padding after the end-of-archive marker may be
// left unread in r.
func EachTarEntry(r io.Reader, fn func(hdr *tar.Header, content io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading layer tar: %w", err)
		}
		if err := fn(hdr, tr); err != nil {
			return err
		}
	}
}

package ocichain

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/ioutils"

	"github.com/nixlayer/nixlayer/layers"
)

// Screening policy for layer tars that come from elsewhere. Refused (the
// whole layer, with the entry named): absolute paths and ".." components in
// names or hard-link targets, device nodes, entry types a build tree never
// holds, more bytes than the signed record announces, a tar whose digest
// differs from the image's diff_id. Neutralised (the entry is kept without
// it): setuid and setgid bits, security.* and trusted.* extended attributes
// (file capabilities, SELinux labels, overlayfs' own attributes).
// containers-storage applies the result inside a chroot of the layer, so a
// symlink in the tree cannot lead a later entry outside it either.

// ErrHostile marks a layer refused by screening.
var ErrHostile = errors.New("hostile layer")

// Screened counts what screening neutralised.
type Screened struct {
	SetID  atomic.Int64 // entries whose setuid/setgid bits were cleared
	Xattrs atomic.Int64 // extended attributes dropped
}

// Screen decompresses a layer blob (zstd, gzip or plain tar, detected) and
// returns its tar with hostile entries refused or neutralised. Reading the
// result fails, and so does the layer store's ApplyDiff reading it, as soon
// as something is refused; the tar's digest must equal diffID and its
// length must not exceed maxSize.
func Screen(blob io.Reader, diffID digest.Digest, maxSize int64, report *Screened) io.ReadCloser {
	if report == nil {
		report = &Screened{}
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(screen(blob, pw, diffID, maxSize, report))
	}()
	return pr
}

func screen(blob io.Reader, out io.Writer, diffID digest.Digest, maxSize int64, report *Screened) error {
	dec, err := archive.DecompressStream(blob)
	if err != nil {
		return fmt.Errorf("decompressing layer: %w", err)
	}
	defer dec.Close()
	h := diffID.Algorithm().Digester()
	// Every byte of the tar goes through the digest and the count.
	read := ioutils.NewWriteCounter(h.Hash())
	in := io.TeeReader(dec, read)
	tw := tar.NewWriter(out)
	err = layers.EachTarEntry(in, func(hdr *tar.Header, content io.Reader) error {
		if err := checkEntry(hdr); err != nil {
			return err
		}
		if hdr.Size > maxSize-read.Count {
			return fmt.Errorf("%w: %s (%d bytes) would make the layer larger than its record says (%d bytes)", ErrHostile, hdr.Name, hdr.Size, maxSize)
		}
		neutralise(hdr, report)
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer tar entry %s: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, content); err != nil {
			return fmt.Errorf("layer tar entry %s: %w", hdr.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The end-of-archive padding belongs to the digest too.
	if _, err := io.Copy(io.Discard, io.LimitReader(in, maxSize-read.Count+1)); err != nil {
		return fmt.Errorf("reading layer tar: %w", err)
	}
	if read.Count > maxSize {
		return fmt.Errorf("%w: the layer unpacks to more than the %d bytes its record says", ErrHostile, maxSize)
	}
	if got := h.Digest(); got != diffID {
		return fmt.Errorf("%w: the layer's tar has digest %s, its image says %s", ErrHostile, got, diffID)
	}
	return tw.Close()
}

func checkEntry(hdr *tar.Header) error {
	if bad := unsafePath(hdr.Name); bad != "" {
		return fmt.Errorf("%w: entry %q %s", ErrHostile, hdr.Name, bad)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeFifo:
	case tar.TypeLink:
		if bad := unsafePath(hdr.Linkname); bad != "" {
			return fmt.Errorf("%w: hard link %q to %q %s", ErrHostile, hdr.Name, hdr.Linkname, bad)
		}
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device node %q (%d,%d); build layers never hold devices", ErrHostile, hdr.Name, hdr.Devmajor, hdr.Devminor)
	default:
		return fmt.Errorf("%w: entry %q has tar type %q, which build layers never hold", ErrHostile, hdr.Name, hdr.Typeflag)
	}
	if hdr.Size < 0 {
		return fmt.Errorf("%w: entry %q has a negative size", ErrHostile, hdr.Name)
	}
	return nil
}

// unsafePath says what is wrong with a name that could reach outside the
// layer ("" when nothing).
func unsafePath(name string) string {
	if strings.HasPrefix(name, "/") {
		return "is absolute"
	}
	for _, part := range strings.Split(path.Clean(name), "/") {
		if part == ".." {
			return "leaves the layer (..)"
		}
	}
	if strings.ContainsRune(name, 0) {
		return "contains a NUL byte"
	}
	return ""
}

func neutralise(hdr *tar.Header, report *Screened) {
	if hdr.Mode&(04000|02000) != 0 {
		hdr.Mode &^= 04000 | 02000
		report.SetID.Add(1)
	}
	for k := range hdr.PAXRecords {
		if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && privilegedXattr(attr) {
			delete(hdr.PAXRecords, k)
			report.Xattrs.Add(1)
		}
	}
	// The reader also fills the deprecated Xattrs; the writer merges it back.
	for k := range hdr.Xattrs {
		if privilegedXattr(k) {
			delete(hdr.Xattrs, k)
		}
	}
}

func privilegedXattr(name string) bool {
	return strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "trusted.")
}

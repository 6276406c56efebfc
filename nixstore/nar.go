package nixstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// NARHash serializes path (a file, directory or symlink on the host; it
// need not be in the store) as a Nix archive and returns the archive's
// SHA-256 and size: the values `nix-store --dump PATH | sha256sum` and
// `nix-hash --type sha256 PATH` give and that Nix registers.
func NARHash(path string) (sum [32]byte, size uint64, err error) {
	h := sha256.New()
	cw := &countWriter{w: h}
	if err := DumpNAR(cw, path); err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, cw.n, nil
}

// FormatHash renders a SHA-256 digest as "sha256:<hex>", the form
// nix-store --register-validity accepts.
func FormatHash(sum [32]byte) string {
	return "sha256:" + hex.EncodeToString(sum[:])
}

// FormatHashBase32 renders a SHA-256 digest as "sha256:<nixbase32>", the
// form nix-store -q --hash prints.
func FormatHashBase32(sum [32]byte) string {
	return "sha256:" + nixbase32.EncodeToString(sum[:])
}

type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// DumpNAR writes the NAR serialization of path to w, like
// nix-store --dump. Regular files are executable in the archive when
// their owner-execute bit is set; directory entries are sorted by name.
// Other file types (devices, sockets, fifos) are an error.
func DumpNAR(w io.Writer, path string) error {
	nw := &narWriter{w: w}
	nw.str("nix-archive-1")
	if nw.err != nil {
		return fmt.Errorf("writing NAR of %s: %w", path, nw.err)
	}
	return nw.node(path)
}

type narWriter struct {
	w   io.Writer
	err error
	buf [8]byte
	cp  []byte
}

var zeros [8]byte

func (n *narWriter) u64(v uint64) {
	if n.err != nil {
		return
	}
	binary.LittleEndian.PutUint64(n.buf[:], v)
	_, n.err = n.w.Write(n.buf[:])
}

func (n *narWriter) pad(size uint64) {
	if r := size % 8; r != 0 && n.err == nil {
		_, n.err = n.w.Write(zeros[:8-r])
	}
}

func (n *narWriter) str(s string) {
	n.u64(uint64(len(s)))
	if n.err == nil {
		_, n.err = io.WriteString(n.w, s)
	}
	n.pad(uint64(len(s)))
}

func (n *narWriter) node(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("NAR serialization: %w", err)
	}
	n.str("(")
	n.str("type")
	switch mode := fi.Mode(); {
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("NAR serialization: %w", err)
		}
		n.str("symlink")
		n.str("target")
		n.str(target)
	case mode.IsDir():
		n.str("directory")
		entries, err := os.ReadDir(path) // sorted by name, as Nix sorts them
		if err != nil {
			return fmt.Errorf("NAR serialization: %w", err)
		}
		for _, e := range entries {
			n.str("entry")
			n.str("(")
			n.str("name")
			n.str(e.Name())
			n.str("node")
			if err := n.node(filepath.Join(path, e.Name())); err != nil {
				return err
			}
			n.str(")")
		}
	case mode.IsRegular():
		n.str("regular")
		if mode&0o100 != 0 {
			n.str("executable")
			n.str("")
		}
		n.str("contents")
		if err := n.contents(path, fi.Size()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("NAR serialization: %s is a %v, which a Nix store cannot hold; remove it from the output", path, mode.Type())
	}
	n.str(")")
	if n.err != nil {
		return fmt.Errorf("NAR serialization of %s: %w", path, n.err)
	}
	return nil
}

func (n *narWriter) contents(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("NAR serialization: %w", err)
	}
	defer f.Close()
	n.u64(uint64(size))
	if n.err != nil {
		return fmt.Errorf("NAR serialization of %s: %w", path, n.err)
	}
	if n.cp == nil {
		n.cp = make([]byte, 256<<10)
	}
	copied, err := io.CopyBuffer(onlyWriter{n.w}, io.LimitReader(f, size), n.cp)
	if err != nil {
		return fmt.Errorf("NAR serialization of %s: %w", path, err)
	}
	if copied != size {
		return fmt.Errorf("NAR serialization of %s: file changed while reading (%d of %d bytes); do not modify outputs during delivery", path, copied, size)
	}
	n.pad(uint64(size))
	return nil
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses the given buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// Package treefile opens and reads files inside a tree a build made (a
// layer, a build directory, an output) as root may: never through a
// symlink, never outside the tree, never a device or a FIFO.
package treefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrTooBig is returned by Read for a file longer than its limit.
var ErrTooBig = errors.New("file too big to read whole")

// MaxCompared bounds the files nixlayer reads whole to compare or search
// them; a bigger one is judged without its contents (unsure, differing).
const MaxCompared = 256 << 20

// Open opens the regular file name inside dir for reading, never a
// symlink, a device or a FIFO (which could block the reader), and returns
// what it opened.
func Open(dir *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := dir.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// Read reads the regular file name inside dir (as Open) whole, or fails
// with ErrTooBig when it holds more than limit bytes.
func Read(dir *os.Root, name string, limit int64) ([]byte, error) {
	f, fi, err := Open(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s (%d bytes): %w", name, fi.Size(), ErrTooBig)
	}
	// The file may grow after the stat: read at most one byte past limit.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w", name, ErrTooBig)
	}
	return data, nil
}

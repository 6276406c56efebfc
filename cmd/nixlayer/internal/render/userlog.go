package render

import (
	"bytes"
	"io"
	"sync"
)

// UserLog shows the builder's output to a person: Nix consumes the
// stdenv's `@nix {…}` lines itself, so they are dropped here too (the
// phase they announce is already in nixlayer's progress lines).
type UserLog struct {
	mu      sync.Mutex
	w       io.Writer
	partial []byte
}

// NewUserLog is a UserLog writing to w.
func NewUserLog(w io.Writer) *UserLog { return &UserLog{w: w} }

func (u *UserLog) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.partial = append(u.partial, p...)
	for {
		i := bytes.IndexByte(u.partial, '\n')
		if i < 0 {
			break
		}
		line := u.partial[:i+1]
		if !bytes.HasPrefix(line, []byte("@nix ")) {
			if _, err := u.w.Write(line); err != nil {
				return len(p), err
			}
		}
		u.partial = u.partial[i+1:]
	}
	return len(p), nil
}

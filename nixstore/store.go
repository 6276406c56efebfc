// Package nixstore talks to the local Nix store: it instantiates and
// realises derivations, queries paths, reads the sandbox settings, and
// takes what delivering outputs built outside Nix needs of the store
// (Nix-compatible path locks, registration, GC roots); storetree, above
// it, hashes, scans and delivers the trees.
//
// Commands run the Nix 2.x command-line tools (nix-instantiate,
// nix-store, nix); their stderr goes to the writer set with WithLog and
// its last lines are quoted in errors.
package nixstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/storepath"
)

// StoreDir returns the Nix store directory: $NIX_STORE_DIR, or /nix/store.
func StoreDir() string {
	if d := os.Getenv("NIX_STORE_DIR"); d != "" {
		return filepath.Clean(d)
	}
	return "/nix/store"
}

// IsStorePath reports whether p names a top-level entry of the store
// directory (not a path below one).
func IsStorePath(p string) bool {
	dir, _ := filepath.Split(filepath.Clean(p))
	_, _, ok := SplitStorePath(p)
	return ok && filepath.Clean(dir) == StoreDir()
}

// HashPart returns the 32-character hash part of a store path's base
// name ("" if p is not a store path).
func HashPart(p string) string {
	hash, _, _ := SplitStorePath(p)
	return hash
}

// SplitStorePath splits the base name of p (a store path, or a path whose
// last element is a store path's base name, such as a .drv's lock file
// name) into the hash part and the name, by go-nix's store-path rules:
// "/nix/store/<32 nixbase32 chars>-hello-2.12.drv" gives the hash and
// "hello-2.12.drv". ok is false when the base name is not of that form.
func SplitStorePath(p string) (hash, name string, ok bool) {
	base := filepath.Base(p)
	sp, err := storepath.FromString(base)
	if err != nil || sp.Name == "" {
		return "", "", false
	}
	return base[:len(base)-len(sp.Name)-1], sp.Name, true
}

type logKey struct{}

// WithLog returns a context under which the stderr of Nix commands run
// by this package is copied to w (e.g. os.Stderr or a build log).
func WithLog(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, logKey{}, w)
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := strings.TrimSpace(string(t.buf))
	if len(t.buf) >= t.max {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = "…" + s[i:]
		}
	}
	return s
}

// run runs a Nix tool with args and optional stdin and returns stdout.
// Errors name the command and quote the end of its stderr.
func run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	return runIn(ctx, "", stdin, name, args...)
}

// runIn is run in the directory dir ("" for the current one).
func runIn(ctx context.Context, dir string, stdin io.Reader, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s not found in PATH: install Nix (e.g. apt-get install nix-bin) or add its bin directory to PATH", name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout bytes.Buffer
	tail := &tailBuffer{max: 4096}
	cmd.Stdout = &stdout
	cmd.Stdin = stdin
	if w, ok := ctx.Value(logKey{}).(io.Writer); ok && w != nil {
		cmd.Stderr = io.MultiWriter(tail, w)
	} else {
		cmd.Stderr = tail
	}
	if err := cmd.Run(); err != nil {
		msg := tail.String()
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return stdout.Bytes(), fmt.Errorf("%s %s: %w:\n%s", name, shortArgs(args), err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w", name, shortArgs(args), err)
	}
	return stdout.Bytes(), nil
}

func shortArgs(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func lines(out []byte) []string {
	var res []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			res = append(res, l)
		}
	}
	return res
}

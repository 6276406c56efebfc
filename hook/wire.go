// Package hook is nixlayer as Nix's build hook: it speaks the build-hook
// protocol on stdin/stderr, accepts the stdenv derivations the runner can
// layer, hands the rest to Nix's own remote-build hook, builds accepted
// derivations with the runner and delivers them into the store while Nix
// holds the output locks. It also records builds Nix runs itself
// (pre-/post-build-hook) in an index under the cache directory.
package hook

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/nix-community/go-nix/pkg/wire"
)

// Limits on what Nix can sensibly send; anything larger is garbage and
// must not make the hook allocate without bound.
const (
	maxString = 1 << 20 // a setting value (e.g. a long builders list)
	maxCount  = 1 << 16 // settings, features, input paths, outputs
)

// Request is one `try` message: Nix asks whether the hook builds drvPath.
type Request struct {
	// AmWilling is true when Nix has a free local build slot (max-jobs).
	AmWilling bool
	System    string
	DrvPath   string
	Features  []string // required system features
}

// ErrNotTry means Nix sent something other than "try": by the protocol
// that ends the conversation, like end of input.
var ErrNotTry = errors.New("not a try request")

// ReadSettings reads the settings Nix sends first: repeated (1, name,
// value), ended by 0.
func ReadSettings(r io.Reader) (map[string]string, error) {
	settings := map[string]string{}
	for n := 0; ; n++ {
		more, err := wire.ReadUint64(r)
		if err != nil {
			return nil, fmt.Errorf("reading settings: %w", err)
		}
		switch more {
		case 0:
			return settings, nil
		case 1:
		default:
			return nil, fmt.Errorf("reading settings: expected 0 or 1 before setting %d, got %d", n, more)
		}
		if n >= maxCount {
			return nil, fmt.Errorf("reading settings: more than %d settings", maxCount)
		}
		name, err := wire.ReadString(r, maxString)
		if err != nil {
			return nil, fmt.Errorf("reading setting %d name: %w", n, err)
		}
		value, err := wire.ReadString(r, maxString)
		if err != nil {
			return nil, fmt.Errorf("reading setting %q: %w", name, err)
		}
		settings[name] = value
	}
}

// ReadRequest reads the next request. It returns io.EOF when Nix closed
// the pipe between requests (it does so when it no longer needs the
// hook) and ErrNotTry for any other word.
func ReadRequest(r io.Reader) (*Request, error) {
	word, err := wire.ReadString(r, 64)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("reading request: %w", err)
	}
	if word != "try" {
		return nil, fmt.Errorf("%w: %q", ErrNotTry, word)
	}
	willing, err := wire.ReadUint64(r)
	if err != nil {
		return nil, fmt.Errorf("reading amWilling: %w", err)
	}
	if willing > 1 {
		return nil, fmt.Errorf("reading amWilling: expected 0 or 1, got %d", willing)
	}
	req := &Request{AmWilling: willing == 1}
	if req.System, err = wire.ReadString(r, 256); err != nil {
		return nil, fmt.Errorf("reading system: %w", err)
	}
	if req.DrvPath, err = wire.ReadString(r, 4096); err != nil {
		return nil, fmt.Errorf("reading derivation path: %w", err)
	}
	if req.Features, err = ReadStrings(r); err != nil {
		return nil, fmt.Errorf("reading required features of %s: %w", req.DrvPath, err)
	}
	return req, nil
}

// ReadStrings reads a set or list of strings: a count, then the strings.
func ReadStrings(r io.Reader) ([]string, error) {
	n, err := wire.ReadUint64(r)
	if err != nil {
		return nil, err
	}
	if n > maxCount {
		return nil, fmt.Errorf("%d strings is more than the limit of %d", n, maxCount)
	}
	out := make([]string, 0, n)
	for i := uint64(0); i < n; i++ {
		s, err := wire.ReadString(r, maxString)
		if err != nil {
			return nil, fmt.Errorf("string %d of %d: %w", i+1, n, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// WriteSettings writes settings in the format ReadSettings reads (used to
// pass them on to Nix's own hook).
func WriteSettings(w io.Writer, settings map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(settings)) {
		if err := writeAll(w, uint64(1), name, settings[name]); err != nil {
			return err
		}
	}
	return wire.WriteUint64(w, 0)
}

// WriteRequest writes a try request in Nix's format.
func WriteRequest(w io.Writer, req *Request) error {
	willing := uint64(0)
	if req.AmWilling {
		willing = 1
	}
	return writeAll(w, "try", willing, req.System, req.DrvPath, req.Features)
}

func writeAll(w io.Writer, items ...any) error {
	for _, it := range items {
		var err error
		switch v := it.(type) {
		case uint64:
			err = wire.WriteUint64(w, v)
		case string:
			err = wire.WriteString(w, v)
		case []string:
			if err = wire.WriteUint64(w, uint64(len(v))); err == nil {
				for _, s := range v {
					if err = wire.WriteString(w, s); err != nil {
						break
					}
				}
			}
		default:
			panic(fmt.Sprintf("writeAll: unsupported %T", it))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Package drv reads Nix derivations (.drv files in ATerm format) and
// resolves the store paths a build needs as inputs.
package drv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"syscall"

	"github.com/nix-community/go-nix/pkg/derivation"
)

// Derivation is a parsed .drv file.
type Derivation struct {
	// Path is the .drv file the derivation was read from ("" if unknown).
	Path string
	// Name is the derivation's name (env "name", or the name inside
	// __json for structured-attrs derivations).
	Name string
	// Outputs maps output names (out, dev, …) to their store paths. The
	// path is empty for floating content-addressed outputs.
	Outputs map[string]string
	// OutputHashes holds the fixed-output information per output name;
	// only outputs that have a hash algorithm appear here.
	OutputHashes map[string]OutputHash
	// InputDrvs maps each input .drv path to the names of the outputs
	// used from it.
	InputDrvs map[string][]string
	// InputSrcs are store paths used directly (sources, builder scripts).
	InputSrcs []string
	// System is the platform the derivation builds on (e.g. x86_64-linux).
	System  string
	Builder string
	Args    []string
	Env     map[string]string
}

// OutputHash is the expected content hash of a fixed-output (or
// content-addressed) output: HashAlgo is e.g. "sha256" or "r:sha256",
// Hash the expected digest in hex ("" for floating content addressing).
type OutputHash struct {
	HashAlgo string
	Hash     string
}

// IsFixedOutput reports whether this is a fixed-output derivation: a
// single output "out" with a known hash.
func (d *Derivation) IsFixedOutput() bool {
	if len(d.Outputs) != 1 {
		return false
	}
	h, ok := d.OutputHashes["out"]
	return ok && h.Hash != ""
}

// StructuredAttrs reports whether the derivation uses __structuredAttrs
// (its attributes are in the __json environment variable).
func (d *Derivation) StructuredAttrs() bool {
	_, ok := d.Env["__json"]
	return ok
}

// OutputPaths returns the store paths of all outputs, sorted, without
// empty (not yet known) paths.
func (d *Derivation) OutputPaths() []string {
	paths := make([]string, 0, len(d.Outputs))
	for _, p := range d.Outputs {
		if p != "" {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths
}

// MaxSize bounds a .drv file: the largest derivations of nixpkgs are a few
// MiB (long environment variables); anything bigger is refused unread, so a
// device or a huge file cannot grow the reader without limit.
const MaxSize = 64 << 20

// Read reads and parses the .drv file at path (a regular file of at most
// MaxSize bytes; a symlink is not followed).
func Read(path string) (*Derivation, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parse(data, path)
}

func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading derivation %s: %w (is it a .drv in the Nix store? create it with nix-instantiate)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading derivation %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading derivation %s: not a regular file (a .drv in the Nix store is one; create it with nix-instantiate)", path)
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("reading derivation %s: %d bytes, more than a derivation may have (%d)", path, fi.Size(), MaxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading derivation %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("reading derivation %s: more than a derivation may have (%d bytes)", path, MaxSize)
	}
	return data, nil
}

// Parse parses a derivation in ATerm format; path is used in error
// messages and stored in Derivation.Path. Parse never panics.
func Parse(data []byte, path string) (*Derivation, error) {
	// go-nix returns strings that alias the input buffer: own a copy so
	// later changes to data by the caller cannot change the result.
	return parse(bytes.Clone(data), path)
}

func parse(data []byte, path string) (d *Derivation, err error) {
	where := path
	if where == "" {
		where = "<derivation>"
	}
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("parsing derivation %s: malformed ATerm (parser panic: %v); regenerate it with nix-instantiate", where, r)
		}
	}()
	gd, err := derivation.ReadDerivation(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parsing derivation %s: %w; is this a .drv file written by Nix? regenerate it with nix-instantiate", where, err)
	}
	d = &Derivation{
		Path:         path,
		Name:         gd.Name(),
		Outputs:      make(map[string]string, len(gd.Outputs)),
		OutputHashes: map[string]OutputHash{},
		InputDrvs:    make(map[string][]string, len(gd.InputDerivations)),
		InputSrcs:    append([]string(nil), gd.InputSources...),
		System:       gd.Platform,
		Builder:      gd.Builder,
		Args:         append([]string(nil), gd.Arguments...),
		Env:          make(map[string]string, len(gd.Env)),
	}
	for name, o := range gd.Outputs {
		if o == nil {
			continue
		}
		d.Outputs[name] = o.Path
		if o.HashAlgorithm != "" {
			d.OutputHashes[name] = OutputHash{HashAlgo: o.HashAlgorithm, Hash: o.Hash}
		}
	}
	for p, outs := range gd.InputDerivations {
		d.InputDrvs[p] = append([]string(nil), outs...)
	}
	for k, v := range gd.Env {
		d.Env[k] = v
	}
	return d, nil
}

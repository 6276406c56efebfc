package drv

import (
	"bytes"
	"fmt"
	"sort"
	"sync"

	"github.com/nix-community/go-nix/pkg/derivation"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// Checker recomputes what a derivation's contents imply, as Nix does: the
// .drv's own store path (a text path of its contents and references) and
// each output path (hashDerivationModulo over the input derivations). A
// derivation that passes is one Nix itself would build to exactly those
// outputs; one whose output paths were edited is refused. Store paths never
// change, so what was computed for one is kept.
type Checker struct {
	mu           sync.Mutex
	replacements map[string]string // .drv path → its hash modulo
}

// NewChecker returns an empty Checker.
func NewChecker() *Checker { return &Checker{replacements: map[string]string{}} }

// Check reads the .drv at path (which the caller has found to be a valid
// store path) and refuses it unless path and every output path are the
// ones its contents give.
func (c *Checker) Check(path string) error {
	if storepath.StoreDir != storeDirOf(path) {
		return fmt.Errorf("derivation %s: nixlayer recomputes output paths only for derivations in %s", path, storepath.StoreDir)
	}
	gd, err := c.read(path)
	if err != nil {
		return err
	}
	return c.check(gd, path)
}

// check refuses gd, read from path, unless path and its output paths are
// the ones its contents give.
func (c *Checker) check(gd *derivation.Derivation, path string) (err error) {
	defer func() {
		if r := recover(); r != nil { // go-nix panics on what its parser let through
			err = fmt.Errorf("derivation %s: malformed (%v); regenerate it with nix-instantiate", path, r)
		}
	}()
	if err := checkDrvPath(gd, path); err != nil {
		return err
	}
	return c.checkOutputs(gd, path)
}

// checkOutputs refuses gd unless each output path is the one its contents
// give.
func (c *Checker) checkOutputs(gd *derivation.Derivation, path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inputs, err := c.inputReplacements(gd, map[string]bool{path: true})
	if err != nil {
		return fmt.Errorf("derivation %s: %w", path, err)
	}
	want, err := gd.CalculateOutputPaths(inputs)
	if err != nil {
		return fmt.Errorf("derivation %s: computing its output paths: %w", path, err)
	}
	names := make([]string, 0, len(gd.Outputs))
	for name := range gd.Outputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got := gd.Outputs[name].Path
		if got == "" {
			continue // floating content-addressed: no path is claimed
		}
		if got != want[name] {
			return fmt.Errorf("derivation %s: output %s is %s, but its contents give %s: the .drv was not written by Nix (edited output paths); refused", path, name, got, want[name])
		}
	}
	return nil
}

func (c *Checker) read(path string) (gd *derivation.Derivation, err error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			gd, err = nil, fmt.Errorf("parsing derivation %s: malformed ATerm (parser panic: %v); regenerate it with nix-instantiate", path, r)
		}
	}()
	gd, err = derivation.ReadDerivation(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parsing derivation %s: %w; is this a .drv file written by Nix? regenerate it with nix-instantiate", path, err)
	}
	return gd, nil
}

// checkDrvPath refuses a .drv whose store path is not the one its
// contents and references give (a file added to the store under a .drv
// name by other means).
func checkDrvPath(gd *derivation.Derivation, path string) error {
	own, err := gd.DrvPath()
	if err != nil {
		return fmt.Errorf("derivation %s: computing its store path: %w", path, err)
	}
	if own != path {
		return fmt.Errorf("derivation %s: its contents belong at %s: it was not added to the store as a derivation; refused", path, own)
	}
	return nil
}

// inputReplacements computes the hash modulo of each input derivation of
// gd, recursively (c.mu held; seen guards against a cycle, which a valid
// store cannot hold).
func (c *Checker) inputReplacements(gd *derivation.Derivation, seen map[string]bool) (map[string]string, error) {
	out := make(map[string]string, len(gd.InputDerivations))
	for in := range gd.InputDerivations {
		if r, ok := c.replacements[in]; ok {
			out[in] = r
			continue
		}
		if seen[in] {
			return nil, fmt.Errorf("input derivation %s depends on itself", in)
		}
		seen[in] = true
		igd, err := c.read(in)
		if err != nil {
			return nil, fmt.Errorf("input derivation: %w", err)
		}
		if err := checkDrvPath(igd, in); err != nil {
			return nil, fmt.Errorf("input %w", err)
		}
		inputs, err := c.inputReplacements(igd, seen)
		if err != nil {
			return nil, err
		}
		r, err := igd.CalculateDrvReplacement(inputs)
		if err != nil {
			return nil, fmt.Errorf("input derivation %s: %w", in, err)
		}
		c.replacements[in] = r
		out[in] = r
	}
	return out, nil
}

func storeDirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return ""
}

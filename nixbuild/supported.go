// Package nixbuild is Nix's builder contract as nixlayer reproduces it:
// which derivations can be layered (Unsupported, Splittable), what the
// builder is given (its environment, the passAsFile files, the structured
// attributes and their files), and what Nix checks about the outputs after
// the build (OutputChecks). It reads derivations and builds nothing: the
// runner builds with it, the hook decides with it.
package nixbuild

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/nixstore"
)

// Unsupported names what in d nixlayer does not reproduce ("" when
// nothing): such derivations are left to Nix rather than built
// differently. It is the one list of what cannot be layered: the hook
// declines these derivations, the CLI refuses them naming nix-build.
// Everything else Nix implements around a builder (passAsFile, reference
// checks, outputChecks) the runner reproduces.
func Unsupported(d *drv.Derivation) string {
	if len(d.OutputHashes) > 0 && !d.IsFixedOutput() {
		return "content-addressed outputs"
	}
	for name, p := range d.Outputs {
		if p == "" {
			return "a content-addressed output (" + name + ") whose path is known only after the build"
		}
	}
	for _, a := range []string{"exportReferencesGraph", "__noChroot", "__impure", "__contentAddressed"} {
		if _, ok := d.Env[a]; ok {
			return a
		}
	}
	if attrs, err := Attrs(d); err == nil {
		for _, a := range []string{"exportReferencesGraph", "unsafeDiscardReferences", "__noChroot", "__impure", "__contentAddressed"} {
			if _, ok := attrs[a]; ok {
				return a
			}
		}
	}
	return ""
}

// Splittable decides, without building or realising anything, whether the
// builder is a stdenv whose genericBuild nixlayer can run phase by phase;
// if not, why the runner builds it as one layer (the hook declines it). It
// returns the builder's flags before its script (e.g. -e), which every
// step passes on.
func Splittable(d *drv.Derivation) (ok bool, whyWhole string, shellFlags []string) {
	switch {
	case d.IsFixedOutput():
		return false, "fixed-output derivation", nil
	case d.Env["stdenv"] == "" && !d.StructuredAttrs():
		return false, "no stdenv attribute", nil
	case d.Env["buildCommand"] != "" || d.Env["buildCommandPath"] != "":
		return false, "buildCommand builds in one step", nil
	case len(d.Args) == 0:
		return false, "builder has no script argument", nil
	}
	var flags []string
	for _, a := range d.Args[:len(d.Args)-1] {
		if !strings.HasPrefix(a, "-") {
			// e.g. nixpkgs' source-stdenv.sh before default-builder.sh
			continue
		}
		flags = append(flags, a)
	}
	script, err := readBuilderScript(d.Args[len(d.Args)-1])
	if err != nil {
		return false, err.Error(), nil
	}
	if !bytes.Contains(script, []byte("genericBuild")) {
		return false, "builder script does not call genericBuild", nil
	}
	base := filepath.Base(d.Builder)
	if !strings.Contains(base, "bash") && !strings.HasSuffix(base, "-sh") {
		return false, "builder is not bash", nil
	}
	return true, "", flags
}

// maxBuilderScript bounds the builder script read to decide whether a
// derivation is a stdenv build (nixpkgs' default-builder.sh is a few lines).
const maxBuilderScript = 1 << 20

// readBuilderScript reads the builder's script argument, a path the
// derivation chooses: only a regular file inside the store (no symlink
// followed, opened non-blocking) of at most maxBuilderScript bytes, never
// a device, FIFO or file elsewhere on the host.
func readBuilderScript(p string) ([]byte, error) {
	store := nixstore.StoreDir()
	rel, err := filepath.Rel(store, p)
	if err != nil || !filepath.IsAbs(p) || p != filepath.Clean(p) || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("builder script %q is not a file in the Nix store %s, so it was not read", p, store)
	}
	dir, err := os.OpenRoot(store)
	if err != nil {
		return nil, fmt.Errorf("builder script %q: %w", p, err)
	}
	defer dir.Close()
	f, _, err := treefile.Open(dir, rel)
	if err != nil {
		return nil, fmt.Errorf("builder script %q was not read (only a regular file in the store is): %w", p, err)
	}
	defer f.Close()
	script, err := io.ReadAll(io.LimitReader(f, maxBuilderScript+1))
	if err != nil {
		return nil, fmt.Errorf("builder script %q: %w", p, err)
	}
	if len(script) > maxBuilderScript {
		return nil, fmt.Errorf("builder script %q is larger than %d MiB, so it was not read", p, maxBuilderScript>>20)
	}
	return script, nil
}

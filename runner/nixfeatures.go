package runner

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/sandbox"
)

// unsupported names derivation features nixlayer does not reproduce; such
// derivations are left to Nix (the hook declines them, the CLI says so)
// rather than built differently.
func unsupported(d *drv.Derivation) string {
	for _, a := range []string{"exportReferencesGraph", "__noChroot", "__impure", "__contentAddressed"} {
		if _, ok := d.Env[a]; ok {
			return a
		}
	}
	if d.StructuredAttrs() {
		var attrs map[string]json.RawMessage
		if json.Unmarshal([]byte(d.Env["__json"]), &attrs) == nil {
			for _, a := range []string{"exportReferencesGraph", "outputChecks", "__noChroot", "__impure"} {
				if _, ok := attrs[a]; ok {
					return a
				}
			}
		}
	}
	return ""
}

// passAsFile lists the attributes Nix hands to the builder as files.
func passAsFile(d *drv.Derivation) []string {
	if d.StructuredAttrs() {
		return nil
	}
	return strings.Fields(d.Env["passAsFile"])
}

// passAsFileName is the file Nix writes an attribute to: .attr- and the
// nix-base32 SHA-256 of the attribute's name.
func passAsFileName(attr string) string {
	h := sha256.Sum256([]byte(attr))
	return ".attr-" + nixbase32.EncodeToString(h[:])
}

// applyPassAsFile moves passAsFile attributes from the environment to
// <name>Path variables, as Nix does.
func applyPassAsFile(d *drv.Derivation, env map[string]string) {
	for _, a := range passAsFile(d) {
		if _, ok := d.Env[a]; ok {
			delete(env, a)
			env[a+"Path"] = sandbox.BuildDir + "/" + passAsFileName(a)
		}
	}
}

// writePassAsFiles writes those attributes into the build directory.
func writePassAsFiles(d *drv.Derivation, buildDir string) error {
	for _, a := range passAsFile(d) {
		v, ok := d.Env[a]
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join(buildDir, passAsFileName(a)), []byte(v), 0o644); err != nil {
			return fmt.Errorf("writing passAsFile attribute %s: %w", a, err)
		}
	}
	return nil
}

// checkReferences enforces allowedReferences, disallowedReferences,
// allowedRequisites and disallowedRequisites as Nix does after a build, so
// nixlayer never registers an output Nix would refuse.
func checkReferences(ctx context.Context, j *job, trees map[string]string) error {
	d := j.drv
	checks := map[string]string{}
	for _, c := range []string{"allowedReferences", "disallowedReferences", "allowedRequisites", "disallowedRequisites"} {
		if v, ok := d.Env[c]; ok {
			checks[c] = v
		}
	}
	if len(checks) == 0 {
		return nil
	}
	candidates := append(append([]string{}, j.closure...), d.OutputPaths()...)
	// An entry may name an output of this derivation instead of a path.
	resolve := func(list string) map[string]bool {
		set := map[string]bool{}
		for _, x := range strings.Fields(list) {
			if p, ok := d.Outputs[x]; ok {
				x = p
			}
			set[x] = true
		}
		return set
	}
	for out, tree := range trees {
		refs, err := nixstore.ScanReferences(tree, candidates)
		if err != nil {
			return fmt.Errorf("scanning the references of %s: %w", out, err)
		}
		for name, list := range checks {
			used := refs
			if strings.HasSuffix(name, "Requisites") {
				if used, err = requisites(ctx, refs, d.OutputPaths()); err != nil {
					return err
				}
			}
			set := resolve(list)
			var bad []string
			for _, r := range used {
				if r == out {
					continue // self-references are always allowed
				}
				if strings.HasPrefix(name, "allowed") != set[r] {
					bad = append(bad, r)
				}
			}
			if len(bad) > 0 {
				sort.Strings(bad)
				return fmt.Errorf("output '%s' is not allowed to refer to the following paths (%s):\n  %s", out, name, strings.Join(bad, "\n  "))
			}
		}
	}
	return nil
}

// requisites is the closure of an output's references (outputs of this
// derivation are not valid yet and count as themselves).
func requisites(ctx context.Context, refs, outputs []string) ([]string, error) {
	own := map[string]bool{}
	for _, o := range outputs {
		own[o] = true
	}
	var valid []string
	set := map[string]bool{}
	for _, r := range refs {
		set[r] = true
		if !own[r] {
			valid = append(valid, r)
		}
	}
	closure, err := nixstore.Closure(ctx, valid)
	if err != nil {
		return nil, err
	}
	for _, p := range closure {
		set[p] = true
	}
	var all []string
	for p := range set {
		all = append(all, p)
	}
	return all, nil
}

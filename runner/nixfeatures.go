package runner

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/sandbox"
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
	if d.StructuredAttrs() {
		var attrs map[string]json.RawMessage
		if json.Unmarshal([]byte(d.Env["__json"]), &attrs) == nil {
			for _, a := range []string{"exportReferencesGraph", "unsafeDiscardReferences", "__noChroot", "__impure", "__contentAddressed"} {
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
func writePassAsFiles(d *drv.Derivation, buildDir *os.Root) error {
	for _, a := range passAsFile(d) {
		v, ok := d.Env[a]
		if !ok {
			continue
		}
		if err := writeFileIn(buildDir, passAsFileName(a), []byte(v), 0o644); err != nil {
			return fmt.Errorf("writing passAsFile attribute %s: %w", a, err)
		}
	}
	return nil
}

// outputCheck is what Nix checks about one output after the build: the
// legacy top-level attributes (allowedReferences, …) apply to every
// output; with structured attributes only outputChecks.<output> counts.
type outputCheck struct {
	lists          map[string][]string // allowedReferences, disallowedRequisites, … → entries
	maxSize        *uint64
	maxClosureSize *uint64
	ignoreSelfRefs bool
}

var referenceChecks = []string{"allowedReferences", "disallowedReferences", "allowedRequisites", "disallowedRequisites"}

// outputChecks reads the checks of each output (by output name).
func outputChecks(d *drv.Derivation) (map[string]outputCheck, error) {
	checks := map[string]outputCheck{}
	if !d.StructuredAttrs() {
		c := outputCheck{lists: map[string][]string{}, ignoreSelfRefs: true}
		for _, name := range referenceChecks {
			if v, ok := d.Env[name]; ok {
				c.lists[name] = strings.Fields(v)
			}
		}
		if len(c.lists) > 0 {
			for out := range d.Outputs {
				checks[out] = c
			}
		}
		return checks, nil
	}
	var attrs struct {
		OutputChecks map[string]struct {
			AllowedReferences    *[]string `json:"allowedReferences"`
			DisallowedReferences *[]string `json:"disallowedReferences"`
			AllowedRequisites    *[]string `json:"allowedRequisites"`
			DisallowedRequisites *[]string `json:"disallowedRequisites"`
			MaxSize              *uint64   `json:"maxSize"`
			MaxClosureSize       *uint64   `json:"maxClosureSize"`
			IgnoreSelfRefs       bool      `json:"ignoreSelfRefs"`
		} `json:"outputChecks"`
	}
	if err := json.Unmarshal([]byte(d.Env["__json"]), &attrs); err != nil {
		return nil, fmt.Errorf("%s: outputChecks: %w", d.Path, err)
	}
	for out, oc := range attrs.OutputChecks {
		c := outputCheck{lists: map[string][]string{}, maxSize: oc.MaxSize, maxClosureSize: oc.MaxClosureSize, ignoreSelfRefs: oc.IgnoreSelfRefs}
		for name, l := range map[string]*[]string{"allowedReferences": oc.AllowedReferences, "disallowedReferences": oc.DisallowedReferences,
			"allowedRequisites": oc.AllowedRequisites, "disallowedRequisites": oc.DisallowedRequisites} {
			if l != nil {
				c.lists[name] = *l
			}
		}
		checks[out] = c
	}
	return checks, nil
}

// checkReferences enforces allowedReferences, disallowedReferences,
// allowedRequisites, disallowedRequisites and (structured attributes)
// outputChecks with maxSize and maxClosureSize as Nix does after a build,
// so nixlayer never registers an output Nix would refuse. trees maps output
// paths to the built trees.
func checkReferences(ctx context.Context, j *job, trees map[string]string) error {
	d := j.drv
	checks, err := outputChecks(d)
	if err != nil {
		return err
	}
	if len(checks) == 0 {
		return nil
	}
	candidates := append(append([]string{}, j.closure...), d.OutputPaths()...)
	// An entry may name an output of this derivation instead of a path.
	resolve := func(list []string) map[string]bool {
		set := map[string]bool{}
		for _, x := range list {
			if p, ok := d.Outputs[x]; ok {
				x = p
			}
			set[x] = true
		}
		return set
	}
	for _, outName := range sortedKeys(d.Outputs) {
		out := d.Outputs[outName]
		c, ok := checks[outName]
		if !ok {
			continue
		}
		tree := trees[out]
		refs, err := nixstore.ScanReferences(tree, candidates)
		if err != nil {
			return fmt.Errorf("scanning the references of %s: %w", out, err)
		}
		var closure []string // computed once, when a check needs it
		closureOf := func() ([]string, error) {
			if closure == nil {
				closure, err = requisites(ctx, refs, d.OutputPaths())
			}
			return closure, err
		}
		for _, name := range referenceChecks {
			list, ok := c.lists[name]
			if !ok {
				continue
			}
			used := refs
			if strings.HasSuffix(name, "Requisites") {
				if used, err = closureOf(); err != nil {
					return err
				}
			}
			set := resolve(list)
			var bad []string
			for _, r := range used {
				if r == out && c.ignoreSelfRefs {
					continue
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
		if c.maxSize == nil && c.maxClosureSize == nil {
			continue
		}
		_, size, err := nixstore.NARHash(tree)
		if err != nil {
			return err
		}
		if c.maxSize != nil && size > *c.maxSize {
			return fmt.Errorf("path '%s' is too large at %d bytes; limit is %d bytes", out, size, *c.maxSize)
		}
		if c.maxClosureSize != nil {
			total, err := closureSize(ctx, j, out, size, trees, closureOf)
			if err != nil {
				return err
			}
			if total > *c.maxClosureSize {
				return fmt.Errorf("closure of path '%s' is too large at %d bytes; limit is %d bytes", out, total, *c.maxClosureSize)
			}
		}
	}
	return nil
}

// closureSize is the NAR size of an output's closure: its own size, the
// other outputs it reaches (not valid yet: measured in their trees) and
// the valid paths (as Nix records them).
func closureSize(ctx context.Context, j *job, out string, own uint64, trees map[string]string, closureOf func() ([]string, error)) (uint64, error) {
	closure, err := closureOf()
	if err != nil {
		return 0, err
	}
	total := own
	var valid []string
	for _, p := range closure {
		switch tree, isOutput := trees[p]; {
		case p == out:
		case isOutput:
			_, n, err := nixstore.NARHash(tree)
			if err != nil {
				return 0, err
			}
			total += n
		default:
			valid = append(valid, p)
		}
	}
	sizes, err := nixstore.NARSizes(ctx, valid)
	if err != nil {
		return 0, err
	}
	for _, n := range sizes {
		total += n
	}
	return total, nil
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

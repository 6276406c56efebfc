package phaserun

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/nixbuild"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/nixstore/storetree"
)

// CheckReferences enforces allowedReferences, disallowedReferences,
// allowedRequisites, disallowedRequisites and (structured attributes)
// outputChecks with maxSize and maxClosureSize as Nix does after a build,
// so nixlayer never registers an output Nix would refuse. trees maps output
// paths to the built trees.
func CheckReferences(ctx context.Context, j *Job, trees map[string]string) error {
	d := j.Drv
	checks, err := nixbuild.OutputChecks(d)
	if err != nil {
		return err
	}
	if len(checks) == 0 {
		return nil
	}
	candidates := append(append([]string{}, j.Closure...), d.OutputPaths()...)
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
	for _, outName := range slices.Sorted(maps.Keys(d.Outputs)) {
		out := d.Outputs[outName]
		c, ok := checks[outName]
		if !ok {
			continue
		}
		tree := trees[out]
		refs, err := storetree.ScanReferences(tree, candidates)
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
		for _, name := range nixbuild.ReferenceChecks {
			list, ok := c.Lists[name]
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
				if r == out && c.IgnoreSelfRefs {
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
		if c.MaxSize == nil && c.MaxClosureSize == nil {
			continue
		}
		_, size, err := storetree.NARHash(tree)
		if err != nil {
			return err
		}
		if c.MaxSize != nil && size > *c.MaxSize {
			return fmt.Errorf("path '%s' is too large at %d bytes; limit is %d bytes", out, size, *c.MaxSize)
		}
		if c.MaxClosureSize != nil {
			total, err := closureSize(ctx, j, out, size, trees, closureOf)
			if err != nil {
				return err
			}
			if total > *c.MaxClosureSize {
				return fmt.Errorf("closure of path '%s' is too large at %d bytes; limit is %d bytes", out, total, *c.MaxClosureSize)
			}
		}
	}
	return nil
}

// closureSize is the NAR size of an output's closure: its own size, the
// other outputs it reaches (not valid yet: measured in their trees) and
// the valid paths (as Nix records them).
func closureSize(ctx context.Context, j *Job, out string, own uint64, trees map[string]string, closureOf func() ([]string, error)) (uint64, error) {
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
			_, n, err := storetree.NARHash(tree)
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

package drv

import (
	"fmt"
	"sort"
)

// InputPaths returns the store paths a build of d needs: the requested
// outputs of each input derivation (read from their .drv files) plus
// d's input sources; sorted and de-duplicated. It does not compute
// closures (see nixstore.Closure).
func InputPaths(d *Derivation) ([]string, error) {
	seen := map[string]bool{}
	for _, s := range d.InputSrcs {
		seen[s] = true
	}
	for drvPath, outs := range d.InputDrvs {
		in, err := Read(drvPath)
		if err != nil {
			return nil, fmt.Errorf("resolving inputs of %s: %w", describe(d), err)
		}
		for _, o := range outs {
			p, ok := in.Outputs[o]
			if !ok {
				return nil, fmt.Errorf("resolving inputs of %s: input derivation %s has no output %q; the .drv files are inconsistent, re-run nix-instantiate", describe(d), drvPath, o)
			}
			if p == "" {
				return nil, fmt.Errorf("resolving inputs of %s: output %q of %s has no fixed store path (content-addressed derivation); build it first with nix-store --realise", describe(d), o, drvPath)
			}
			seen[p] = true
		}
	}
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths, nil
}

func describe(d *Derivation) string {
	if d.Path != "" {
		return d.Path
	}
	if d.Name != "" {
		return "derivation " + d.Name
	}
	return "derivation"
}

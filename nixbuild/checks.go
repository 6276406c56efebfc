package nixbuild

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
)

// OutputCheck is what Nix checks about one output after the build: the
// legacy top-level attributes (allowedReferences, …) apply to every
// output; with structured attributes only outputChecks.<output> counts.
type OutputCheck struct {
	Lists          map[string][]string // allowedReferences, disallowedRequisites, … → entries
	MaxSize        *uint64
	MaxClosureSize *uint64
	IgnoreSelfRefs bool
}

// ReferenceChecks are the lists an OutputCheck may hold, in the order Nix
// checks them.
var ReferenceChecks = []string{"allowedReferences", "disallowedReferences", "allowedRequisites", "disallowedRequisites"}

// OutputChecks reads the checks of each output of d (by output name).
func OutputChecks(d *drv.Derivation) (map[string]OutputCheck, error) {
	checks := map[string]OutputCheck{}
	if !d.StructuredAttrs() {
		c := OutputCheck{Lists: map[string][]string{}, IgnoreSelfRefs: true}
		for _, name := range ReferenceChecks {
			if v, ok := d.Env[name]; ok {
				c.Lists[name] = strings.Fields(v)
			}
		}
		if len(c.Lists) > 0 {
			for out := range d.Outputs {
				checks[out] = c
			}
		}
		return checks, nil
	}
	attrs, err := Attrs(d)
	if err != nil {
		return nil, err
	}
	raw, ok := attrs["outputChecks"]
	if !ok {
		return checks, nil
	}
	var perOutput map[string]struct {
		AllowedReferences    *[]string `json:"allowedReferences"`
		DisallowedReferences *[]string `json:"disallowedReferences"`
		AllowedRequisites    *[]string `json:"allowedRequisites"`
		DisallowedRequisites *[]string `json:"disallowedRequisites"`
		MaxSize              *uint64   `json:"maxSize"`
		MaxClosureSize       *uint64   `json:"maxClosureSize"`
		IgnoreSelfRefs       bool      `json:"ignoreSelfRefs"`
	}
	if err := json.Unmarshal(raw, &perOutput); err != nil {
		return nil, fmt.Errorf("%s: outputChecks: %w", d.Path, err)
	}
	for out, oc := range perOutput {
		c := OutputCheck{Lists: map[string][]string{}, MaxSize: oc.MaxSize, MaxClosureSize: oc.MaxClosureSize, IgnoreSelfRefs: oc.IgnoreSelfRefs}
		for name, l := range map[string]*[]string{"allowedReferences": oc.AllowedReferences, "disallowedReferences": oc.DisallowedReferences,
			"allowedRequisites": oc.AllowedRequisites, "disallowedRequisites": oc.DisallowedRequisites} {
			if l != nil {
				c.Lists[name] = *l
			}
		}
		checks[out] = c
	}
	return checks, nil
}

// Package planner plans a layered build: it chains every phase's key
// (the phase, the attributes placed in it, the previous key; the first
// also the sandbox, the inputs and nixlayer's recipe), looks the keys up
// in the layer cache, chooses the chain to reuse, and explains the first
// phase that must run (the attribute that changed, and the rule that
// placed it there). It is pure over its Inputs and a Lookup of the cache:
// the engine computes the inputs from a prepared derivation and its
// probe, and reads the cache as the plan's viewer sees it (access); tests
// give a table.
package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/verdict"
)

// Names of the first phase's key inputs that are not attributes.
const (
	keyInputsSandbox  = "(inputs and sandbox)"
	keyInputsNixlayer = "(nixlayer driver and sandbox)"
)

// WholeBuild is the single phase of a derivation built in one step.
const WholeBuild = "build"

// Status of a phase in a plan.
const (
	StatusCached = "cached" // a layer with this phase's key exists
	StatusRun    = "run"    // must run
	StatusForced = "forced" // reused by --from although its key differs
)

// Plan says what a build would do.
type Plan struct {
	Drv  string `json:"drv"`
	Name string `json:"name"`
	// Package groups the builds of one package across versions and edits
	// (its pname, or the name), as the cache and the history do.
	Package  string            `json:"package"`
	Outputs  map[string]string `json:"outputs"`
	Whole    bool              `json:"whole,omitempty"` // built as one layer
	WhyWhole string            `json:"whyWhole,omitempty"`
	Strict   bool              `json:"strict,omitempty"`
	From     string            `json:"from,omitempty"`
	Phases   []PhasePlan       `json:"phases"`
	// Placements say, per attribute, the rule that placed it in the phase
	// whose key covers it (phaserules.Place); empty when every phase's key
	// covers every attribute (--strict, one layer).
	Placements map[string]phaserules.Placement `json:"placements,omitempty"`
	// Rewrite is set when reused layers were built with other output paths.
	Rewrite map[string]string `json:"rewrite,omitempty"`
	// RewriteMap says whether the reused chain's path map is known:
	// "exact", "inexact: …" (it cannot be applied exactly), "judged on the
	// outputs: …" (it leaves bytes unexplained), or "not learned" (the
	// build learns it first).
	RewriteMap string `json:"rewriteMap,omitempty"`
	// Exactness predicts the verdict on the outputs from the build the map
	// was learned from: which rule would decide, every unexplained file.
	Exactness *verdict.Exactness `json:"exactness,omitempty"`
	// Viewer is whom the plan serves: what it reuses, and whom the layers
	// of a forced (--from) build are private to.
	Viewer *access.Viewer `json:"-"`
	// ReuseNote says which layer the plan took among several with the same
	// key (logged with -v).
	ReuseNote string `json:"-"`
	// LearnInFront: the build learns the reused layers' path map itself
	// before it resumes (the engine's fullIfFaster), so it runs their
	// phases too (once more, with a synthetic path).
	LearnInFront bool `json:"-"`
}

// runs says whether a build of the plan runs phase ph: a phase to run, or
// a reused one it learns in front.
func (p *Plan) Runs(ph PhasePlan) bool {
	return ph.Status == StatusRun || p.LearnInFront
}

// runKeys are the keys of the phases the plan runs (a foreground build's
// mark).
func (p *Plan) RunKeys() []string {
	var keys []string
	for _, ph := range p.Phases {
		if p.Runs(ph) && ph.Key != "" {
			keys = append(keys, ph.Key)
		}
	}
	return keys
}

// HasForced: the plan reuses a phase --from forced (not what its key
// says).
func (p *Plan) HasForced() bool {
	for _, ph := range p.Phases {
		if ph.Status == StatusForced {
			return true
		}
	}
	return false
}

// LastReused is the top layer of the prefix the plan reuses ("" for none).
func (p *Plan) LastReused() string {
	_, top := p.ReusedPrefix()
	return top
}

// ReusedPrefix is the prefix the plan reuses: how many phases, and the
// top layer ("" for none).
func (p *Plan) ReusedPrefix() (n int, top string) {
	for _, ph := range p.Phases {
		if ph.Status == StatusRun {
			break
		}
		n, top = n+1, ph.Layer.ID
	}
	return n, top
}

// PhasePlan is one phase of a plan.
type PhasePlan struct {
	Name   string `json:"name"`
	Key    string `json:"key"`
	Status string `json:"status"`
	// Reason says why a phase must run: the attribute or input that
	// invalidated it, or the earlier phase it follows.
	Reason string `json:"reason,omitempty"`
	// Follows names the earlier phase this one runs because of (Reason
	// then says so too).
	Follows string   `json:"follows,omitempty"`
	Changed []string `json:"changed,omitempty"`
	// Attrs are the attributes this phase's key covers.
	Attrs []string   `json:"attrs"`
	Layer *LayerInfo `json:"layer,omitempty"`
	// Estimate is how long the phase took the last time it was built for
	// this package (0 when it never was), for a phase that must run.
	Estimate time.Duration `json:"estimate,omitempty"`
	// KeyInputs is what went into the key besides the previous phase's key:
	// a digest per attribute (output paths replaced by placeholders), and for
	// the first phase the inputs and sandbox configuration and what nixlayer
	// itself runs (recipe).
	KeyInputs map[string]string `json:"keyInputs"`
}

// follow marks a phase that runs because an earlier one does.
func (ph *PhasePlan) follow(earlier string) {
	ph.Follows, ph.Reason = earlier, "follows "+earlier
}

// rerun makes a phase the plan reused run after all; the layer it drops
// tells how long the phase takes.
func (ph *PhasePlan) Rerun() {
	if ph.Layer != nil {
		ph.Estimate = ph.Layer.Duration
	}
	ph.Status, ph.Layer = StatusRun, nil
}

// LayerInfo describes a cached layer.
type LayerInfo struct {
	ID       string            `json:"id"`
	Created  time.Time         `json:"created"`
	Duration time.Duration     `json:"duration"`
	Size     int64             `json:"size"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	// Unverified layers rest on an inexact rewrite of an earlier layer.
	Unverified bool `json:"unverified,omitempty"`
}

// Options select how keys are computed and where a build restarts.
type Options struct {
	Strict bool   // key every phase on the whole derivation
	From   string // force a restart at this phase, reusing the latest layers before it
	// RequireVerified ignores layers that rest on an inexact rewrite.
	RequireVerified bool
	Log             io.Writer
	// Viewer is whom the plan serves (nil: the engine's own user).
	Viewer *access.Viewer
}

// Lookup is what planning reads of the layer cache: *layers.Store,
// or a table in the unit tests.
type Lookup interface {
	Lookup(key string) (*layers.Layer, bool)
	Get(id string) (*layers.Layer, error)
	List() ([]*layers.Layer, error)
	Size(id string) int64
}

// Inputs are what a plan is computed from.
type Inputs struct {
	Drv, Name, Pkg string
	Outputs        map[string]string
	Phases         []string // the probed phases, or WholeBuild
	Whole          bool     // built as one layer
	WhyWhole       string
	// Owned are the attributes each phase's key covers (phaserules), Attrs
	// their values with output paths replaced by placeholders.
	Owned map[string][]string
	Attrs map[string]string
	// Placed says by which rule each attribute is where it is.
	Placed map[string]phaserules.Placement
	// Seed keys the first phase besides its attributes: system, builder,
	// arguments, sandbox paths and the inputs no attribute names.
	Seed []string
	// Recipe digests what nixlayer itself runs in the build.
	Recipe string
}

// Make keys every phase, looks the keys up and says why each phase
// that must run does. It returns the plan and the first phase to run (-1
// when every phase is reused).
func Make(in Inputs, look Lookup, po Options) (*Plan, int, error) {
	p := &Plan{Drv: in.Drv, Name: in.Name, Package: in.Pkg, Outputs: in.Outputs, Strict: po.Strict, Whole: in.Whole, WhyWhole: in.WhyWhole}
	p.Phases = phaseKeys(in, po.Strict || in.Whole)
	if !po.Strict && !in.Whole {
		p.Placements = in.Placed
	}
	if po.From != "" && phaserules.Resolve(in.Phases, po.From) == "" {
		return nil, -1, fmt.Errorf("--from %s: %s has no such phase (phases: %s)", po.From, p.Name, strings.Join(in.Phases, " "))
	}
	return p, markCached(look, in.Pkg, p, po), nil
}

// PlacementReasons adds to a phase's reason the rules that placed the
// attributes whose change invalidated it ("GREETING changed (GREETING:
// read from the first phase on: programs may read any attribute)"): a
// resume point that moved is explained where it shows.
func PlacementReasons(reason string, changed []string, placed map[string]phaserules.Placement) string {
	var rules []string
	for _, a := range changed {
		if pl, ok := placed[a]; ok {
			rules = append(rules, a+": "+pl.Why)
		}
	}
	if len(rules) > 3 {
		rules = append(rules[:3], "…")
	}
	if len(rules) == 0 {
		return reason
	}
	return reason + " (" + strings.Join(rules, "; ") + ")"
}

// phaseKeys chains the phases' keys: each covers the previous phase's key,
// the phase's name and the attributes it owns (every attribute with
// allAttrs); the first also covers the seed and the recipe.
func phaseKeys(in Inputs, allAttrs bool) []PhasePlan {
	prevKey := Digest(append([]string{in.Recipe}, in.Seed...)...)
	var out []PhasePlan
	for i, name := range in.Phases {
		pp := PhasePlan{Name: name, Status: StatusRun, KeyInputs: map[string]string{}}
		names := in.Owned[name]
		if allAttrs {
			names = slices.Sorted(maps.Keys(in.Attrs))
		}
		parts := []string{prevKey, "phase:" + name}
		for _, a := range names {
			parts = append(parts, a+"="+in.Attrs[a])
			pp.KeyInputs[a] = Digest(in.Attrs[a])[:16]
		}
		if i == 0 {
			pp.KeyInputs[keyInputsSandbox] = Digest(in.Seed...)[:16]
			pp.KeyInputs[keyInputsNixlayer] = in.Recipe[:16]
		}
		pp.Attrs = names
		pp.Key = Digest(parts...)
		prevKey = pp.Key
		out = append(out, pp)
	}
	return out
}

// markCached looks the keys up and explains every phase that must run; it
// returns the first phase to run (-1: none).
func markCached(look Lookup, pkg string, p *Plan, po Options) int {
	prev, took := PreviousChain(look, pkg)
	fromIdx := -1
	if po.From != "" {
		for i, ph := range p.Phases {
			if phaserules.Resolve([]string{ph.Name}, po.From) != "" {
				fromIdx, p.From = i, ph.Name
			}
		}
	}
	firstRun := -1
	if fromIdx >= 0 {
		// --from reuses the newest chain that reached the phase before it.
		var chain []*layers.Layer
		if fromIdx > 0 {
			chain = ancestors(look, prev[p.Phases[fromIdx-1].Name], fromIdx)
		}
		for i := 0; i < fromIdx && chain != nil; i++ {
			ph := &p.Phases[i]
			ph.Layer = info(look, chain[i])
			if chain[i].Meta.Key == ph.Key && chain[i].Meta.Status == layers.StatusComplete {
				ph.Status = StatusCached
			} else {
				ph.Status, ph.Reason = StatusForced, "reused by --from "+p.From+" although its inputs differ"
			}
		}
		firstRun = 0
		if chain != nil {
			firstRun = fromIdx
			p.Phases[fromIdx].Reason = "--from " + p.From
		} else {
			p.Phases[0].Reason = "--from " + p.From + ": no earlier build reached it"
		}
	} else if firstRun = reuseBest(look, p, po); firstRun >= 0 {
		ph := &p.Phases[firstRun]
		ph.Reason, ph.Changed = Explain(ph, prev[ph.Name], p.Strict)
		ph.Reason = PlacementReasons(ph.Reason, ph.Changed, p.Placements)
	}
	if firstRun >= 0 {
		runFrom(p.Phases, firstRun)
		for i := firstRun; i < len(p.Phases); i++ {
			if d, ok := took[p.Phases[i].Name]; ok {
				p.Phases[i].Estimate = d
			}
		}
	}
	return firstRun
}

// reuseBest marks the longest prefix of phases that have layers as cached,
// with the chain under the best layer of the prefix's last key (chains
// that meet at one key are as good as each other before it, and the top
// decides what the build continues from): one resting on nothing
// unverified (a provisional or inexact rewrite, a forced reuse) before one
// that does, then the one holding the key's name (committed last), then
// the newest. With RequireVerified only verified chains count. It returns
// the first phase to run (-1: none).
func reuseBest(look Lookup, p *Plan, po Options) int {
	byKey := keyedLayers(look, po)
	n := 0
	for n < len(p.Phases) && len(byKey[p.Phases[n].Key]) > 0 {
		n++
	}
	for ; n > 0; n-- {
		key := p.Phases[n-1].Key
		cands := byKey[key]
		named := ""
		if l, ok := look.Lookup(key); ok {
			named = l.ID
		}
		slices.SortStableFunc(cands, func(a, b *layers.Layer) int {
			switch {
			case a.Meta.IsVerified() != b.Meta.IsVerified():
				return boolOrder(a.Meta.IsVerified())
			case (a.ID == named) != (b.ID == named):
				return boolOrder(a.ID == named)
			}
			return b.Created.Compare(a.Created)
		})
		for _, top := range cands {
			chain := ancestors(look, top, n)
			if !consistent(chain, p.Phases, po) {
				continue
			}
			for i, l := range chain {
				p.Phases[i].Status, p.Phases[i].Layer = StatusCached, info(look, l)
			}
			p.ReuseNote = reuseNote(chain, p.Phases, byKey)
			if n == len(p.Phases) {
				return -1
			}
			return n
		}
	}
	return 0
}

// keyedLayers are the layers a plan may reuse, by key: complete phases
// (verified ones only, with RequireVerified).
func keyedLayers(look Lookup, po Options) map[string][]*layers.Layer {
	all, err := look.List()
	if err != nil {
		return nil
	}
	byKey := map[string][]*layers.Layer{}
	for _, l := range all {
		if l.Meta.Key != "" && l.Meta.Status == layers.StatusComplete && l.Meta.KindOf() == layers.KindPhase && (!po.RequireVerified || l.Meta.IsVerified()) {
			byKey[l.Meta.Key] = append(byKey[l.Meta.Key], l)
		}
	}
	return byKey
}

// consistent: the chain under a candidate holds the planned keys (it does
// unless a layer under it was damaged), all verified with RequireVerified.
func consistent(chain []*layers.Layer, phases []PhasePlan, po Options) bool {
	if chain == nil {
		return false
	}
	for i, l := range chain {
		if l.Meta.Key != phases[i].Key || (po.RequireVerified && !l.Meta.IsVerified()) {
			return false
		}
	}
	return true
}

// boolOrder sorts true first.
func boolOrder(first bool) int {
	if first {
		return -1
	}
	return 1
}

// reuseNote says which chain a plan reused when other layers had the keys
// of its phases ("" when none had).
func reuseNote(chain []*layers.Layer, phases []PhasePlan, byKey map[string][]*layers.Layer) string {
	what := func(l *layers.Layer) string {
		if l.Meta.IsVerified() {
			return layers.Short(l.ID) + " (verified)"
		}
		return layers.Short(l.ID) + " (rests on a provisional or inexact rewrite)"
	}
	var others []string
	for i, l := range chain {
		for _, o := range byKey[phases[i].Key] {
			if o.ID != l.ID {
				others = append(others, phases[i].Name+" "+what(o))
			}
		}
	}
	if len(others) == 0 {
		return ""
	}
	return fmt.Sprintf("reusing the chain under %s %s, not %s", phases[len(chain)-1].Name, what(chain[len(chain)-1]), strings.Join(others, ", "))
}

// runFrom marks phase i and every later one to run, the later ones
// following i.
func runFrom(phases []PhasePlan, i int) {
	for k := i; k < len(phases); k++ {
		phases[k].Rerun()
		if k > i {
			phases[k].follow(phases[i].Name)
		}
	}
}

// RerunFrom is p with phase i and every later one to run again, i because
// of why; p itself stays as it was.
func RerunFrom(p *Plan, i int, why string) *Plan {
	np := *p
	np.Phases = slices.Clone(p.Phases)
	runFrom(np.Phases, i)
	np.Phases[i].Reason, np.Phases[i].Follows = why, ""
	return &np
}

// ReusedRewrite is the rewrite the reused prefix of p needs (old output
// path → current one; nil when none), given the first phase to run, and
// the index of the prefix's last phase.
func ReusedRewrite(p *Plan, firstRun int) (map[string]string, int) {
	if firstRun == 0 || len(p.Phases) == 0 {
		return nil, -1
	}
	last := len(p.Phases) - 1
	if firstRun > 0 {
		last = firstRun - 1
	}
	rw := map[string]string{}
	for name, old := range p.Phases[last].Layer.Outputs {
		if cur := p.Outputs[name]; cur != "" && cur != old {
			rw[old] = cur
		}
	}
	if len(rw) == 0 {
		return nil, last
	}
	return rw, last
}

// ancestors returns the chain of n phase layers ending in top, oldest
// first, or nil when it is shorter (a layer was removed) or one of them
// failed or is still being built.
func ancestors(look Lookup, top *layers.Layer, n int) []*layers.Layer {
	if top == nil {
		return nil
	}
	chain, err := layers.PhaseChain(look, top.ID, n)
	if err != nil {
		return nil
	}
	for _, l := range chain {
		if l.Meta.Status == layers.StatusFailed || l.Meta.Status == layers.StatusRunning {
			return nil
		}
	}
	return chain
}

// explain names what invalidated the first phase that must run.
func Explain(ph *PhasePlan, prev *layers.Layer, strict bool) (string, []string) {
	if prev == nil {
		return "no earlier build of this package", nil
	}
	var changed []string
	for a, d := range ph.KeyInputs {
		if prev.Meta.Attrs[a] != d {
			changed = append(changed, a)
		}
	}
	for a := range prev.Meta.Attrs {
		if _, ok := ph.KeyInputs[a]; !ok {
			changed = append(changed, a)
		}
	}
	sort.Strings(changed)
	switch {
	case len(changed) > 0 && strict:
		return "--strict: " + strings.Join(changed, ", ") + " changed", changed
	case len(changed) > 0:
		return strings.Join(changed, ", ") + " changed", changed
	case prev.Meta.Status == layers.StatusFailed:
		return "failed last time", nil
	case prev.Meta.Status == layers.StatusStale:
		return "its layer was dropped: an audit found it differs from a clean build", nil
	default:
		return "not cached (its layer was removed or an earlier phase changed)", nil
	}
}

// PreviousChain returns, per phase, the newest layer of an earlier build
// of the same package, and how long the newest successful run of each
// phase took.
func PreviousChain(look Lookup, pkg string) (map[string]*layers.Layer, map[string]time.Duration) {
	all, err := look.List()
	if err != nil {
		return nil, nil
	}
	prev := map[string]*layers.Layer{}
	took := map[string]time.Duration{}
	for _, l := range all { // oldest first, so the newest wins
		if l.Meta.Package == pkg && l.Meta.Status != layers.StatusRunning && l.Meta.KindOf() == layers.KindPhase {
			prev[l.Meta.Phase] = l
			if l.Meta.Status == layers.StatusComplete && l.Meta.Duration > 0 {
				took[l.Meta.Phase] = l.Meta.Duration
			}
		}
	}
	return prev, took
}

func info(look Lookup, l *layers.Layer) *LayerInfo {
	return &LayerInfo{ID: l.ID, Created: l.Created, Duration: l.Meta.Duration, Size: look.Size(l.ID), Outputs: l.Meta.Outputs, Unverified: !l.Meta.IsVerified()}
}

func Digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\x00", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PhaseNames are the names of a plan's phases, in order (what a verdict
// counts its indexes in).
func PhaseNames(phases []PhasePlan) []string {
	names := make([]string, len(phases))
	for i, ph := range phases {
		names[i] = ph.Name
	}
	return names
}

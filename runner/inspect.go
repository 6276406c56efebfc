package runner

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
)

// AtFailed selects the layer of the newest failed phase.
const AtFailed = "failed"

// Package names the derivation whose layers a command inspects: a .drv
// path (then the current plan decides which layer a phase means) or only a
// derivation name such as hello-1 (then the newest layers of that name).
type Package struct {
	DrvPath string
	Name    string
}

func (p Package) String() string {
	if p.DrvPath != "" {
		return p.DrvPath
	}
	return p.Name
}

// matches reports whether a layer belongs to the package.
func (p Package) matches(l *layers.Layer) bool {
	if p.DrvPath != "" {
		return l.Meta.DrvPath == p.DrvPath
	}
	return l.Meta.DrvName == p.Name
}

// Selected is the layer an inspection command works on.
type Selected struct {
	Layer *layers.Layer
	Phase string // the phase whose end state the layer holds
	// Note tells the user when the layer is not the one of the current
	// derivation (an earlier build with other inputs).
	Note string
	job  *phaserun.Job
}

// Select finds the layer holding the state after phase at (stdenv name
// or short form, "failed", or a layer id prefix) of a package. With a .drv
// path the layer whose key matches the current plan wins; otherwise the
// newest layer of that phase of the derivation, then of any derivation of
// the same name. Only layers v sees are chosen.
func (e *Engine) Select(ctx context.Context, pkg Package, at string, log io.Writer, v *access.Viewer) (*Selected, error) {
	var j *phaserun.Job
	var p *planner.Plan
	if pkg.DrvPath != "" {
		var err error
		if j, err = e.run.Prepare(ctx, pkg.DrvPath, orDiscard(log)); err != nil {
			return nil, err
		}
		if p, err = e.plan(j, planner.Options{Viewer: v}); err != nil {
			return nil, err
		}
		pkg.Name = j.Drv.Name
	}
	sel, err := e.selectLayer(pkg, p, at, v)
	if err != nil {
		return nil, err
	}
	sel.job = j
	return sel, nil
}

func (e *Engine) selectLayer(pkg Package, p *planner.Plan, at string, v *access.Viewer) (*Selected, error) {
	all, vis, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	if at == "" {
		return nil, fmt.Errorf("name a phase (e.g. --at build, --at installPhase) or --at failed")
	}
	if id, ok := e.layers.FindID(at); ok {
		l, err := e.layers.Get(id)
		if err != nil {
			return nil, err
		}
		if !vis.Sees(l) {
			return nil, &access.PrivateLayerError{Layer: l.ID}
		}
		return &Selected{Layer: l, Phase: phaseOf(e, l)}, nil
	}
	// newest returns the newest usable layer passing f, preferring the
	// package's derivation, then any derivation of the same name.
	newest := func(f func(*layers.Layer) bool) (*layers.Layer, bool) {
		var byDrv, byName *layers.Layer
		for _, l := range all { // oldest first
			if l.Meta.Status == layers.StatusRunning || !f(l) {
				continue
			}
			if pkg.matches(l) {
				byDrv = l
			}
			if l.Meta.DrvName == pkg.Name {
				byName = l
			}
		}
		if byDrv != nil {
			return byDrv, true
		}
		return byName, false
	}
	if at == AtFailed {
		l, exact := newest(func(l *layers.Layer) bool { return l.Meta.Status == layers.StatusFailed })
		if l == nil {
			return nil, fmt.Errorf("no failed build of %s in the cache", pkg)
		}
		s := &Selected{Layer: l, Phase: l.Meta.Phase}
		if !exact {
			s.Note = fmt.Sprintf("the newest failed build of %s is of another derivation (%s)", pkg.Name, l.Meta.DrvPath)
		}
		return s, nil
	}
	var phases []string
	if p != nil {
		for _, ph := range p.Phases {
			phases = append(phases, ph.Name)
		}
	} else {
		seen := map[string]bool{}
		for _, l := range all {
			if (pkg.matches(l) || l.Meta.DrvName == pkg.Name) && l.Meta.KindOf() == layers.KindPhase && !seen[l.Meta.Phase] {
				seen[l.Meta.Phase] = true
				phases = append(phases, l.Meta.Phase)
			}
		}
	}
	phase := phaserules.Resolve(phases, at)
	if phase == "" {
		return nil, fmt.Errorf("%s has no phase %q (its phases: %s)", pkg, at, strings.Join(phases, " "))
	}
	if p != nil {
		for _, ph := range p.Phases {
			if ph.Name == phase && ph.Status == planner.StatusCached {
				l, err := e.layers.Get(ph.Layer.ID)
				if err != nil {
					return nil, err
				}
				return &Selected{Layer: l, Phase: phase}, nil
			}
		}
	}
	l, exact := newest(func(l *layers.Layer) bool { return l.Meta.Phase == phase })
	if l == nil {
		return nil, fmt.Errorf("no layer of %s after %s in the cache: build it first (nixlayer build)", pkg, phase)
	}
	s := &Selected{Layer: l, Phase: phase}
	switch {
	case l.Meta.Status == layers.StatusFailed:
		s.Note = fmt.Sprintf("%s failed in that build; this is its failed state", phase)
	case p != nil && !exact:
		s.Note = fmt.Sprintf("the current derivation has no layer after %s; using the newest one of %s (%s), whose inputs differ", phase, pkg.Name, l.Meta.DrvPath)
	case p != nil:
		s.Note = fmt.Sprintf("the layer after %s is from an earlier build whose inputs differ from the current plan", phase)
	}
	return s, nil
}

// phaseOf names the phase a layer ends, looking through rewrite layers.
func phaseOf(e *Engine, l *layers.Layer) string {
	if l == nil {
		return ""
	}
	p, err := layers.NearestPhase(e.layers, l.ID)
	if err != nil || p == nil {
		return ""
	}
	return p.Meta.Phase
}

// LayerRow is one layer as `nixlayer ls` shows it.
type LayerRow struct {
	ID      string `json:"id"`
	Parent  string `json:"parent,omitempty"`
	Package string `json:"package"`
	Drv     string `json:"drv"`
	Phase   string `json:"phase,omitempty"`
	// Status: cached (complete, a cache hit), failed, running, forced
	// (built on layers reused by --from), rewrite (adapted to new output
	// paths), kept (a shell kept with --keep).
	Status   string            `json:"status"`
	Key      string            `json:"key,omitempty"`
	Size     int64             `json:"size"`       // own: the layer's diff
	Shared   int64             `json:"sharedSize"` // the layers below it, shared with other chains
	Created  time.Time         `json:"created"`
	Duration time.Duration     `json:"duration,omitempty"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	Mounted  int               `json:"mounted,omitempty"`
	Children int               `json:"children"`
	Kind     layers.Kind       `json:"kind"`
	Note     string            `json:"note,omitempty"`
	Verified bool              `json:"verified"`
}

// List describes the layers in the cache (only those of pkg when it is
// not empty), grouped by package, each chain from its base to its top;
// only those v sees.
func (e *Engine) List(pkg Package, v *access.Viewer) ([]LayerRow, error) {
	all, _, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	tree := layers.NewTree(all)
	roots := tree.Roots()
	sort.SliceStable(roots, func(a, b int) bool { return roots[a].Meta.DrvName < roots[b].Meta.DrvName })
	var rows []LayerRow
	var walk func(l *layers.Layer, below int64)
	walk = func(l *layers.Layer, below int64) {
		size := e.layers.Size(l.ID)
		if pkg.String() == "" || pkg.matches(l) || (pkg.DrvPath == "" && l.Meta.DrvName == pkg.Name) {
			rows = append(rows, LayerRow{
				ID: l.ID, Parent: l.Parent, Package: l.Meta.DrvName, Drv: l.Meta.DrvPath, Phase: l.Meta.Phase,
				Status: l.StatusWord(), Key: l.Meta.Key, Size: size, Shared: below, Created: l.Created,
				Duration: l.Meta.Duration, Outputs: l.Meta.Outputs, Mounted: e.layers.MountCount(l.ID),
				Children: len(tree.Children(l.ID)), Kind: l.Meta.KindOf(), Note: l.Meta.Note, Verified: l.Meta.IsVerified(),
			})
		}
		if size < 0 {
			size = 0
		}
		for _, c := range tree.Children(l.ID) {
			walk(c, below+size)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return rows, nil
}

// Log returns the stored build log of a package: of one phase, or of every
// phase of the newest chain (the failed one if the newest build failed);
// only of layers v sees.
func (e *Engine) Log(ctx context.Context, pkg Package, phase string, v *access.Viewer) ([]PhaseLog, error) {
	if phase != "" {
		sel, err := e.Select(ctx, pkg, phase, nil, v)
		if err != nil {
			return nil, err
		}
		return e.chainLogs([]*layers.Layer{sel.Layer})
	}
	all, _, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	var top *layers.Layer
	for _, l := range all {
		if l.Meta.KindOf() == layers.KindPhase && l.Meta.Status != layers.StatusRunning && (pkg.matches(l) || (pkg.DrvPath == "" && l.Meta.DrvName == pkg.Name)) {
			top = l
		}
	}
	if top == nil {
		return nil, fmt.Errorf("no build of %s in the cache", pkg)
	}
	chain, err := e.Chain(top.ID)
	if err != nil {
		return nil, err
	}
	return e.chainLogs(chain)
}

// PhaseLog is the log of one phase.
type PhaseLog struct {
	Phase  string `json:"phase"`
	Layer  string `json:"layer"`
	Status string `json:"status"`
	Log    string `json:"log"`
}

func (e *Engine) chainLogs(chain []*layers.Layer) ([]PhaseLog, error) {
	var out []PhaseLog
	for _, l := range chain {
		if l.Meta.KindOf() != layers.KindPhase {
			continue
		}
		data, err := e.layers.Data(l.ID, layers.DataLog)
		if err != nil {
			data = nil // imported or whole layers may have none
		}
		out = append(out, PhaseLog{Phase: l.Meta.Phase, Layer: l.ID, Status: l.StatusWord(), Log: string(data)})
	}
	return out, nil
}

// Chain returns the layers from the base up to top, oldest first.
func (e *Engine) Chain(top string) ([]*layers.Layer, error) {
	return layers.WholeChain(e.layers, top)
}

// Top selects the top of the package's chain: the last cached phase of the
// current plan, else the newest top layer of the package (failed, forced
// or from an earlier derivation of the same name), with a note; only
// layers v sees.
func (e *Engine) Top(ctx context.Context, pkg Package, log io.Writer, v *access.Viewer) (*Selected, error) {
	var p *planner.Plan
	if pkg.DrvPath != "" {
		j, err := e.run.Prepare(ctx, pkg.DrvPath, orDiscard(log))
		if err != nil {
			return nil, err
		}
		if p, err = e.plan(j, planner.Options{Viewer: v}); err != nil {
			return nil, err
		}
		pkg.Name = j.Drv.Name
		for i := len(p.Phases) - 1; i >= 0; i-- {
			if ph := p.Phases[i]; ph.Status == planner.StatusCached {
				l, err := e.layers.Get(ph.Layer.ID)
				if err != nil {
					return nil, err
				}
				return &Selected{Layer: l, Phase: ph.Name, job: j}, nil
			}
		}
	}
	all, _, err := e.visibleLayers(v)
	if err != nil {
		return nil, err
	}
	tree := layers.NewTree(all)
	var top *layers.Layer
	for _, l := range all {
		if len(tree.Children(l.ID)) == 0 && l.Meta.Status != layers.StatusRunning && l.Meta.DrvName == pkg.Name {
			top = l
		}
	}
	if top == nil {
		return nil, fmt.Errorf("no layers of %s in the cache: build it first (nixlayer build)", pkg)
	}
	s := &Selected{Layer: top, Phase: phaseOf(e, top)}
	if p != nil {
		s.Note = fmt.Sprintf("nothing of the current derivation is cached; using the newest chain of %s (%s, %s)", pkg.Name, top.Meta.DrvPath, top.StatusWord())
	}
	return s, nil
}

// Package inspect answers what a user asks of a package's layers: which
// layer a phase means (the current plan's, else the newest of the
// derivation or of its name, or the newest failed one, with a note when it
// is not the current derivation's), the rows of ls, the logs of a chain,
// the top of the newest chain. It is pure over a listing of the layers a
// user sees and a small view of the store; the engine prepares and plans
// the derivation and applies the viewer (access) first.
package inspect

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/planner"
)

// Store is what inspection reads of the layer store.
type Store interface {
	layers.Getter
	FindID(prefix string) (string, bool)
	Size(id string) int64
	MountCount(id string) int
	Data(id, key string) ([]byte, error)
}

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
}

// Choose is the layer holding the state after phase at (stdenv name or
// short form, "failed", or a layer id prefix) of pkg among all, the
// layers its viewer sees (vis): with the current plan p, the layer whose
// key the plan reuses; otherwise the newest layer of that phase of the
// derivation, then of any derivation of the same name, with a note saying
// so.
func Choose(st Store, all []*layers.Layer, vis *access.Visibility, pkg Package, p *planner.Plan, at string) (*Selected, error) {
	if at == "" {
		return nil, fmt.Errorf("name a phase (e.g. --at build, --at installPhase) or --at failed")
	}
	if id, ok := st.FindID(at); ok {
		l, err := st.Get(id)
		if err != nil {
			return nil, err
		}
		if !vis.Sees(l) {
			return nil, &access.PrivateLayerError{Layer: l.ID}
		}
		return &Selected{Layer: l, Phase: phaseOf(st, l)}, nil
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
				l, err := st.Get(ph.Layer.ID)
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
func phaseOf(st layers.Getter, l *layers.Layer) string {
	if l == nil {
		return ""
	}
	p, err := layers.NearestPhase(st, l.ID)
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

// Rows describes the layers all (only those of pkg when it is not empty),
// grouped by package, each chain from its base to its top.
func Rows(st Store, all []*layers.Layer, pkg Package) []LayerRow {
	tree := layers.NewTree(all)
	roots := tree.Roots()
	sort.SliceStable(roots, func(a, b int) bool { return roots[a].Meta.DrvName < roots[b].Meta.DrvName })
	var rows []LayerRow
	var walk func(l *layers.Layer, below int64)
	walk = func(l *layers.Layer, below int64) {
		size := st.Size(l.ID)
		if pkg.String() == "" || pkg.matches(l) || (pkg.DrvPath == "" && l.Meta.DrvName == pkg.Name) {
			rows = append(rows, LayerRow{
				ID: l.ID, Parent: l.Parent, Package: l.Meta.DrvName, Drv: l.Meta.DrvPath, Phase: l.Meta.Phase,
				Status: l.StatusWord(), Key: l.Meta.Key, Size: size, Shared: below, Created: l.Created,
				Duration: l.Meta.Duration, Outputs: l.Meta.Outputs, Mounted: st.MountCount(l.ID),
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
	return rows
}

// PhaseLog is the log of one phase.
type PhaseLog struct {
	Phase  string `json:"phase"`
	Layer  string `json:"layer"`
	Status string `json:"status"`
	Log    string `json:"log"`
}

// Logs are the logs of the phase layers of chain.
func Logs(st Store, chain []*layers.Layer) []PhaseLog {
	var out []PhaseLog
	for _, l := range chain {
		if l.Meta.KindOf() != layers.KindPhase {
			continue
		}
		data, err := st.Data(l.ID, layers.DataLog)
		if err != nil {
			data = nil // imported or whole layers may have none
		}
		out = append(out, PhaseLog{Phase: l.Meta.Phase, Layer: l.ID, Status: l.StatusWord(), Log: string(data)})
	}
	return out
}

// NewestTop is the top of pkg's newest chain among all (failed, forced, or
// of an earlier derivation of the same name), for a package whose current
// plan (p, nil without a .drv) has nothing cached.
func NewestTop(st Store, all []*layers.Layer, pkg Package, p *planner.Plan) (*Selected, error) {
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
	s := &Selected{Layer: top, Phase: phaseOf(st, top)}
	if p != nil {
		s.Note = fmt.Sprintf("nothing of the current derivation is cached; using the newest chain of %s (%s, %s)", pkg.Name, top.Meta.DrvPath, top.StatusWord())
	}
	return s, nil
}

// NewestBuild is the newest phase layer of pkg among all (the failed one
// when the newest build failed): the top of the chain whose logs `log`
// shows.
func NewestBuild(all []*layers.Layer, pkg Package) (*layers.Layer, error) {
	var top *layers.Layer
	for _, l := range all {
		if l.Meta.KindOf() == layers.KindPhase && l.Meta.Status != layers.StatusRunning && (pkg.matches(l) || (pkg.DrvPath == "" && l.Meta.DrvName == pkg.Name)) {
			top = l
		}
	}
	if top == nil {
		return nil, fmt.Errorf("no build of %s in the cache", pkg)
	}
	return top, nil
}

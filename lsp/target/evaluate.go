package target

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/nixexpr"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/runner"
)

// Evaluation is what the server last learnt about a buffer's target.
type Evaluation struct {
	// Err is set when the target could not be evaluated or planned.
	Err string
	// Packages are the evaluated derivations that match a derivation call
	// of the buffer.
	Packages []*Package
	// Done is when the evaluation finished.
	Done time.Time
	// How says which target was evaluated and how it was found (see
	// Found); Choices are the targets that match the buffer when several
	// do, Chosen the one evaluated.
	How     string
	Choices []Choice
	Chosen  string
	// Unsaved says why the buffer's unsaved edits are not in the
	// evaluation (a flake is evaluated from the files on disk).
	Unsaved string
}

// Package is one evaluated derivation with its plan.
type Package struct {
	DrvPath string
	Name    string // the derivation's name (pname-version)
	Pname   string
	// Env is the derivation's environment (its attributes as Nix passes
	// them to the builder).
	Env  map[string]string
	Plan *planner.Plan
	// Texts holds, per attribute name, the source text of the values the
	// matching derivation call had when it was evaluated.
	Texts map[string]string
	// Failure is the last failed build of this derivation, if any.
	Failure *runner.PhaseError
	// NixBuild is the newest build of this derivation that Nix ran itself
	// (recorded by nixlayer's post-build-hook), if any.
	NixBuild *buildindex.Build
	// Result is the state of nixlayer's newest result of this derivation
	// (provisional, verifying, verified, replaced), if any.
	Result *results.Record
	// Background is the background work running on the package's chain
	// (learning its path map, verifying a provisional result), if any.
	Background *results.Job
	// History are the phases of the package's last layered builds.
	History []buildindex.PhaseRun
	// State is what the engine last reported about this derivation after
	// its build's phases besides the result's state (learning in the
	// background, a fallback, …), if anything, while the server runs.
	State *EngineState
}

// Evaluate instantiates the target of the buffer at path, whose text is
// text, and asks the engine (connected on first use) for the plan of each
// derivation that matches a derivation call of the buffer.
func (fr *Finder) Evaluate(ctx context.Context, ws Workspace, path string, text []byte, engine func() (api.Service, error)) *Evaluation {
	ev := &Evaluation{}
	defer func() { ev.Done = time.Now() }()
	if !ws.Settings.trusted() {
		ev.Err = "the workspace is not trusted (Restricted Mode): nixlayer evaluates and builds nothing in it, since evaluating Nix runs its code and can build"
		return ev
	}
	if !ws.Contains(path) {
		ev.Err = fmt.Sprintf("%s is outside the workspace folders, so nixlayer does not evaluate it", path)
		return ev
	}
	found := fr.Find(ctx, ws, path)
	ev.How, ev.Choices, ev.Chosen = found.How, found.Choices, found.Chosen
	if found.err != nil {
		ev.Err = found.err.Error()
		return ev
	}
	if t := found.Target; t.File != "" && !ws.Contains(t.File) {
		ev.Err = fmt.Sprintf("the target file %s is outside the workspace folders, so nixlayer does not evaluate it", t.File)
		return ev
	}
	nt, evaluated, unsaved := found.nixTarget(path, text)
	ev.Unsaved = unsaved
	drvs, err := nixstore.Instantiate(ctx, nt)
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	derivs := nixexpr.FindDerivations(parser.Parse(evaluated))
	var all []*Package
	for _, p := range drvs {
		d, err := drv.Read(p)
		if err != nil {
			ev.Err = fmt.Sprintf("reading %s: %v", p, err)
			return ev
		}
		all = append(all, &Package{DrvPath: p, Name: d.Name, Pname: d.Env["pname"], Env: d.Env})
	}
	// Keep the evaluated derivations some call of the buffer builds.
	for i, call := range derivs {
		p := MatchPackage(call, i, len(derivs), all)
		if p != nil && p.Texts == nil {
			p.Texts = AttrTexts(call)
			ev.Packages = append(ev.Packages, p)
		}
	}
	if len(ev.Packages) == 0 {
		if len(derivs) == 0 {
			ev.Err = "no derivation call (mkDerivation, derivation, overrideAttrs) in this file"
		} else {
			var names []string
			for _, p := range all {
				names = append(names, p.Name)
			}
			ev.Err = fmt.Sprintf("the target evaluates to %s, which matches no derivation call of this file; set nixlayer's target (file + attr, or expr)", strings.Join(names, ", "))
		}
		return ev
	}
	eng, err := engine()
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	for _, p := range ev.Packages {
		pr, err := eng.Plan(ctx, api.PlanRequest{DrvPath: p.DrvPath}, api.Output{})
		if err != nil {
			ev.Err = fmt.Sprintf("planning %s: %v", p.Name, err)
			continue
		}
		p.Plan, p.NixBuild = pr.Plan, pr.BuiltByNix
		p.Result = pr.Result
		if h := pr.History; h != nil {
			p.History, p.Failure = h.Runs, FailureOf(h.Failure)
		}
	}
	return ev
}

// FailureOf is a failed phase the history remembers, as the build
// reported it.
func FailureOf(r *buildindex.PhaseRun) *runner.PhaseError {
	if r == nil {
		return nil
	}
	return &runner.PhaseError{Drv: r.Drv, Phase: r.Phase, Exit: r.Exit, LogTail: r.LogTail, Layer: r.Layer}
}

// MatchPackage pairs a derivation call with the evaluated derivation of
// the same pname or name; a buffer with one call and an evaluation with one
// derivation pair up whatever their names.
func MatchPackage(d nixexpr.Derivation, i, n int, pkgs []*Package) *Package {
	if d.Name != "" {
		for _, p := range pkgs {
			if p.Pname == d.Name || p.Name == d.Name || strings.HasPrefix(p.Name, d.Name+"-") {
				return p
			}
		}
	}
	if len(pkgs) == 1 && (n == 1 || i == 0 && d.Name == "") {
		return pkgs[0]
	}
	return nil
}

// AttrTexts joins the value texts of each attribute name (an attribute
// may be set through several paths, like passthru.a and passthru.b).
func AttrTexts(d nixexpr.Derivation) map[string]string {
	m := map[string]string{}
	for _, a := range d.Attributes {
		t := a.Text
		if a.Inherited {
			t = "inherit " + a.Text
		}
		if old, ok := m[a.Name]; ok {
			m[a.Name] = old + "\x00" + t
		} else {
			m[a.Name] = t
		}
	}
	return m
}

// PickPackage is the evaluated package a command names (by pname or
// name; "" picks the first), or nil.
func PickPackage(ev *Evaluation, name string) *Package {
	if ev == nil {
		return nil
	}
	for _, p := range ev.Packages {
		if name == "" || p.Pname == name || p.Name == name || strings.HasPrefix(p.Name, name+"-") {
			return p
		}
	}
	return nil
}

// WithPackages is a copy of the evaluation with each package copied and
// updated: evaluations are immutable for readers, so changes install one.
func (ev *Evaluation) WithPackages(update func(cp *Package)) *Evaluation {
	next := *ev
	next.Packages = nil
	for _, p := range ev.Packages {
		cp := *p
		update(&cp)
		next.Packages = append(next.Packages, &cp)
	}
	return &next
}

// BackgroundOf is the background work running on a package's chain, if
// any: for its derivation, or another derivation of the same package.
func BackgroundOf(p *Package, jobs []results.Job) *results.Job {
	for i, j := range jobs {
		if j.Drv == p.DrvPath || (p.Plan != nil && j.Package != "" && j.Package == p.Plan.Package) {
			return &jobs[i]
		}
	}
	return nil
}

// EngineState is an event that is not about a phase's progress: waiting
// for a lock, a rewrite, a fallback, learning, and whatever state a newer
// engine reports (provisional, verified, …): they are shown by their kind
// and text, so a new kind needs no change here.
type EngineState struct {
	Kind events.EventKind `json:"kind"`
	Text string           `json:"text"`
	At   time.Time        `json:"at"`
}

// phaseProgress are the event kinds the phase lenses show themselves;
// every other kind is an engine state.
var phaseProgress = map[events.EventKind]bool{
	events.EventPlan: true, events.EventCached: true, events.EventStart: true, events.EventDone: true,
	events.EventFailed: true, events.EventDeliver: true, events.EventFinished: true,
}

// IsEngineState tells whether an event kind is an engine state.
func IsEngineState(k events.EventKind) bool { return !phaseProgress[k] }

// StateOf is the engine state an event reports, or nil.
func StateOf(ev events.Event, now time.Time) *EngineState {
	if !IsEngineState(ev.Kind) {
		return nil
	}
	text := ev.Short()
	if text == "" {
		text = string(ev.Kind)
	}
	return &EngineState{Kind: ev.Kind, Text: text, At: now}
}

// Replan is what the engine says of an evaluation's packages after a
// build: their plans (with the history) and the work the build left to
// the background (learning).
type Replan struct {
	plans map[string]*api.PlanResult
	jobs  []results.Job
}

// PlanAgain asks the engine again for the plans of every package of the
// evaluation, since a build (possibly of an unsaved buffer, a different
// .drv) may have filled layers they share.
func PlanAgain(ctx context.Context, eng api.Service, ev *Evaluation, log *zap.Logger) Replan {
	r := Replan{plans: map[string]*api.PlanResult{}}
	var drvs []string
	for _, p := range ev.Packages {
		drvs = append(drvs, p.DrvPath)
		pr, err := eng.Plan(ctx, api.PlanRequest{DrvPath: p.DrvPath}, api.Output{})
		if err != nil {
			log.Warn("planning after a build", zap.String("drv", p.DrvPath), zap.Error(err))
			continue
		}
		r.plans[p.DrvPath] = pr
	}
	if rr, err := eng.Results(ctx, api.ResultsRequest{Drvs: drvs}); err == nil {
		r.jobs = rr.Background
	}
	return r
}

// Apply is a copy of ev with the new plans and background work, and the
// engine's states the server keeps per derivation (states).
func (r Replan) Apply(ev *Evaluation, states map[string]*EngineState) *Evaluation {
	return ev.WithPackages(func(cp *Package) {
		if pr := r.plans[cp.DrvPath]; pr != nil {
			cp.Plan, cp.Result = pr.Plan, pr.Result
			if h := pr.History; h != nil {
				cp.History, cp.Failure = h.Runs, FailureOf(h.Failure)
			} else {
				cp.History, cp.Failure = nil, nil
			}
		}
		cp.State = states[cp.DrvPath]
		cp.Background = BackgroundOf(cp, r.jobs)
	})
}

// WithResults is a copy of ev with the result records (by derivation) and
// the background jobs that changed, and the records that changed; nil when
// nothing did.
func (ev *Evaluation) WithResults(records map[string]*results.Record, background []results.Job) (*Evaluation, []*results.Record) {
	var changed []*results.Record
	fresh := map[string]*results.Record{}
	jobs := map[string]*results.Job{}
	jobsChanged := false
	for _, p := range ev.Packages {
		if r := records[p.DrvPath]; r != nil && !sameRecord(p.Result, r) {
			fresh[p.DrvPath] = r
			changed = append(changed, r)
		}
		jobs[p.DrvPath] = BackgroundOf(p, background)
		if !sameJob(p.Background, jobs[p.DrvPath]) {
			jobsChanged = true
		}
	}
	if len(changed) == 0 && !jobsChanged {
		return nil, nil
	}
	return ev.WithPackages(func(cp *Package) {
		if r := fresh[cp.DrvPath]; r != nil {
			cp.Result = r
		}
		cp.Background = jobs[cp.DrvPath]
	}), changed
}

func sameJob(a, b *results.Job) bool {
	return (a == nil) == (b == nil) && (a == nil || a.PID == b.PID)
}

func sameRecord(a, b *results.Record) bool {
	return a != nil && b != nil && a.State == b.State && a.Updated.Equal(b.Updated)
}

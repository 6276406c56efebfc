// Package learn learns the path maps that let a resume reuse layers
// built for other output paths: by running a chain's phases again on
// scratch layers with a synthetic output path (a twin: in the background
// after a cold build, in front of a resume that needs the map, or beside
// the build with learn: concurrent), or from a pair of real builds of the
// same phases with other output paths (a rebuild and the chain it
// replaces, corroborated by a third when their hashes agree at an index).
// It follows the bytes a map cannot explain into the outputs (their
// reach, and with reruns whether they are the build's own
// nondeterminism), judges a resume's outputs on them, and keeps the
// timing that estimates the next learner. The engine's builds, resumes,
// settling and policy call it; it runs phases through phaserun.
package learn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/foreground"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/learnmap"
	"github.com/nixlayer/nixlayer/shellstate"
)

// Learner learns the path maps of one cache's chains.
type Learner struct {
	Layers *layers.Store
	Run    *phaserun.Runner
	Locks  cachelock.Locks
	// CacheDir keeps the last learning's timing and the learners' records.
	CacheDir string
	Log      *zap.Logger
	// Fixed: the engine rewrites with a rewriter of its own (tests), so
	// nothing is learned from pairs.
	Fixed bool
	// unpaired are the layers whose map the other builds of them named
	// could not teach (MapFromPair), not compared again by this process.
	unpaired sync.Map
}

// PathMap returns the path-dependency map of the chain that ends in top
// (the first n phases). A chain's maps are learned once, by running its
// phases a second time on scratch layers with synthetic output paths of the
// same length and comparing the trees after every phase; either in the
// background after a cold build (nixlayer learn) or here, at the first
// resume that needs one. A layer with top's key built with other output
// paths spares that twin (mapFromPair).
func (lr *Learner) PathMap(ctx context.Context, j *phaserun.Job, plan *planner.Plan, top string, n int, progress func(events.Event)) (*rewrite.Map, error) {
	if m := lr.StoredMap(top); m != nil {
		return m, nil
	}
	unlock, err := lr.Locks.Exclusive(ctx, cachelock.Learn, j.Pkg, func() {
		progress(events.Event{Kind: events.EventWait, Message: "waiting for the path map being learned in the background"})
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	if m := lr.StoredMap(top); m != nil { // learned while we waited
		return m, nil
	}
	if m := lr.MapFromPair(ctx, plan, j.Pkg, top, true, progress); m != nil {
		return m, nil
	}
	chain, err := layers.PhaseChain(lr.Layers, top, n)
	if err != nil {
		return nil, err
	}
	// In front of the user (or of a result waiting to be settled): the one
	// map a resume needs, no reruns to tell nondeterminism apart.
	if err := lr.LearnChain(ctx, j, plan, chain, Top, progress); err != nil {
		return nil, err
	}
	if m := lr.StoredMap(top); m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("no path map for layer %s after learning", top)
}

func (lr *Learner) StoredMap(id string) *rewrite.Map {
	data, err := lr.Layers.Data(id, layers.DataPathMap)
	if err != nil {
		return nil
	}
	var m rewrite.Map
	if err := json.Unmarshal(data, &m); err != nil {
		lr.Log.Warn("unreadable path map; learning it again", zap.String("layer", id))
		return nil
	}
	return &m
}

// Mode is how much a twin of a chain learns.
type Mode int

const (
	// Top: the map of the chain's top layer only, the one a resume
	// from it needs, and no reruns: for a build someone waits for. One
	// tree comparison instead of one per phase.
	Top Mode = iota
	// All: every layer's map, so an edit of any phase resumes, and
	// the reruns that tell nondeterminism apart (classify): for the
	// background learner.
	All
)

// LearnChain runs the chain's phases again with synthetic output paths and
// stores the map of what depends on them on the chain's top layer, or on
// every layer (mode). When the chain reaches the outputs, it records how
// each unexplained file reached them; with All it also reruns the
// phases that produced bytes reaching an output with the same paths, to
// tell the build's own nondeterminism from a path dependence.
func (lr *Learner) LearnChain(ctx context.Context, j *phaserun.Job, plan *planner.Plan, chain []*layers.Layer, mode Mode, progress func(events.Event)) error {
	classify := mode == All
	defer lr.announceLearning(j.Pkg, chain)()
	top := chain[len(chain)-1]
	// The second build must differ from the chain's own build in the output
	// paths only, so each phase runs with the environment of the derivation
	// that built its layer (a later derivation may have reused the older
	// layers, and the current one may differ in later phases' attributes).
	jobs, err := lr.chainJobs(ctx, j, chain)
	if err != nil {
		return err
	}
	base := jobs[len(jobs)-1]
	pathsA := top.Meta.Outputs
	pathsB := map[string]string{}
	for name, p := range base.Drv.Outputs {
		a := pathsA[name]
		if a == "" {
			return fmt.Errorf("layer %s does not record the path of output %s", top.ID, name)
		}
		// Unlike every path the chain's layers were built with: its older
		// layers may come from a derivation with other output paths.
		var avoid []string
		for _, l := range chain {
			avoid = append(avoid, l.Meta.Outputs[name])
		}
		pathsB[name] = learnmap.SyntheticPath(a, append(avoid, p)...)
	}
	n := len(chain)
	progress(events.Event{Kind: events.EventLearn, Message: fmt.Sprintf("learning which bytes depend on the output path: running %d phases again with a synthetic path (once per chain)", n)})
	t0 := time.Now()
	sc := lr.Run.NewScratch(plan)
	defer sc.Close()
	scratchJobs := make([]*phaserun.Job, n)
	for i, jb := range jobs {
		toB := map[string]string{}
		for name, p := range jb.Drv.Outputs {
			toB[p] = pathsB[name]
		}
		scratchJobs[i] = scratchJob(jb, pathsB, toB)
	}
	state := jobs[0].Probe.Start
	if state != nil {
		toB := map[string]string{}
		for name, p := range jobs[0].Drv.Outputs {
			toB[p] = pathsB[name]
		}
		state = phaserun.RewriteState(state, toB)
	}
	parent := ""
	exact := true
	var treesB []string
	// Learn less: the phases up to an exactly learned map (a rebuild's
	// pair) are not run again; their twin tree is that map's rewrite.
	from := 0
	if k, id, next := lr.learnedPrefix(j, chain, pathsB, sc); k > 0 {
		from, parent, state = k, id, next
		classify = false // no twin layers of the skipped phases to rerun against
		progress(events.Event{Kind: events.EventLearn, Message: fmt.Sprintf("the first %d phases' map is learned exactly: their twin is its rewrite, %d phases run again", k, n-k)})
	}
	for i := from; i < n; i++ {
		if err := foreground.WorkOf(ctx).WaitResumed(ctx); err != nil {
			return err
		}
		phase := plan.Phases[i].Name
		progress(events.Event{Kind: events.EventLearn, Phase: phase, Index: i + 1, Total: n, Message: fmt.Sprintf("learning: [%d/%d] %s with the synthetic path", i+1, n, phase)})
		id, next, err := sc.Run(ctx, scratchJobs[i], i, parent, state, "learn")
		if err != nil {
			return fmt.Errorf("%w, so the path map cannot be learned", err)
		}
		parent, state = id, next
		fault.Point(fault.InLearn)
		if mode == Top && i < n-1 {
			continue
		}
		root, err := lr.Layers.Mount(id)
		if err != nil {
			return err
		}
		m, err := lr.learnLayer(chain[i], root, pathsB)
		lr.Layers.Unmount(id)
		if err != nil {
			return err
		}
		exact = exact && m.Exact()
		treesB = append(treesB, id)
	}
	if err := lr.judgeLearned(ctx, jobs, plan, chain, treesB, sc, classify, progress); err != nil {
		// The maps stand; their unexplained bytes stay unjudged (inexact
		// if they reach an output).
		lr.Log.Warn("judging the learned chain's unexplained bytes", zap.Error(err))
	}
	if mode == All { // the background learner's measure (learningEstimate)
		lr.recordLearning(chain[from:], time.Since(t0))
	}
	progress(events.Event{Kind: events.EventLearned, Elapsed: time.Since(t0), Message: fmt.Sprintf("path maps learned in %s (exact: %v)", time.Since(t0).Round(time.Millisecond), exact)})
	return nil
}

// learnedPrefix finds the longest prefix of chain, short of the whole,
// whose top layer has an exact path map and whose other layers have a map
// or twins to learn it from when a resume needs it (a rebuild's pair; a
// map learned in front has neither, so its prefix runs again), and
// rewrites it for pathsB on a layer of sc: the tree a twin of those
// phases would have made. It returns how many phases that spares (0:
// none) and the layer and shell state the twin continues from.
func (lr *Learner) learnedPrefix(j *phaserun.Job, chain []*layers.Layer, pathsB map[string]string, sc *phaserun.Scratch) (int, string, *shellstate.Delta) {
	var all []*layers.Layer // listed once, when a prefix needs its twins
	// mappable: every layer under base has its map, or twins.
	mappable := func(below []*layers.Layer) bool {
		for _, l := range below {
			if lr.StoredMap(l.ID) != nil {
				continue
			}
			if all == nil {
				if all, _ = lr.Layers.List(); all == nil {
					return false
				}
			}
			if twinsAmong(all, l.Meta.Key, l.ID, l.Meta.Outputs) == nil {
				return false
			}
		}
		return true
	}
	for k := len(chain) - 1; k >= 1; k-- {
		base := chain[k-1]
		m := lr.StoredMap(base.ID)
		if m == nil || !m.Exact() || !mappable(chain[:k-1]) {
			continue
		}
		old2new := map[string]string{}
		for name, p := range base.Meta.Outputs {
			if b := pathsB[name]; b != "" {
				old2new[p] = b
			}
		}
		state, err := lr.Run.LoadState(base.ID)
		if err != nil {
			return 0, "", nil
		}
		id, next, v, err := lr.Run.RewriteLayer(j, base.ID, state, old2new, rewrite.Learned{Map: m})
		if err != nil {
			lr.Log.Warn("rewriting a learned prefix for the twin", zap.Error(err))
			return 0, "", nil
		}
		sc.Created = append(sc.Created, id)
		if v.Exact {
			return k, id, next
		}
	}
	return 0, "", nil
}

// chainJobs are the derivations that built each layer of a chain (j,
// the current one, where a layer's derivation is gone or is j).
func (lr *Learner) chainJobs(ctx context.Context, j *phaserun.Job, chain []*layers.Layer) ([]*phaserun.Job, error) {
	byDrv := map[string]*phaserun.Job{j.Drv.Path: j}
	jobs := make([]*phaserun.Job, len(chain))
	for i, l := range chain {
		d := l.Meta.DrvPath
		if byDrv[d] == nil {
			oj, err := lr.Run.Prepare(ctx, d, io.Discard)
			if err != nil || oj.Splittable != j.Splittable {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				lr.Log.Warn("the derivation that built a reused layer is gone; learning with the current one", zap.String("drv", d), zap.Error(err))
				oj = j
			}
			byDrv[d] = oj
		}
		jobs[i] = byDrv[d]
	}
	return jobs, nil
}

// learnLayer compares one chain layer with its scratch twin and keeps the
// map with the chain layer.
func (lr *Learner) learnLayer(l *layers.Layer, treeB string, pathsB map[string]string) (*rewrite.Map, error) {
	treeA, err := lr.Layers.Mount(l.ID)
	if err != nil {
		return nil, err
	}
	defer lr.Layers.Unmount(l.ID)
	m, err := learnmap.Learn(treeA, treeB, l.Meta.Outputs, pathsB)
	if err != nil {
		return nil, fmt.Errorf("learning the path map of %s: %w", l.Meta.Phase, err)
	}
	return m, lr.storeMap(l.ID, m)
}

// storeMap keeps m as the path map of the chain that ends in layer id.
func (lr *Learner) storeMap(id string, m *rewrite.Map) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return lr.Layers.SetData(id, layers.DataPathMap, data)
}

// scratchJob is j with other output paths: the derivation's outputs and
// every environment value that mentions them.
func scratchJob(j *phaserun.Job, outputs map[string]string, curTo map[string]string) *phaserun.Job {
	sj := *j
	d := *j.Drv
	d.Outputs = outputs
	sj.Drv = &d
	sj.Env = map[string]string{}
	for k, v := range j.Env {
		for c, b := range curTo {
			v = strings.ReplaceAll(v, c, b)
		}
		sj.Env[k] = v
	}
	// The attributes too: they become .attrs files and passAsFile files.
	env := map[string]string{}
	for k, v := range d.Env {
		for c, b := range curTo {
			v = strings.ReplaceAll(v, c, b)
		}
		env[k] = v
	}
	d.Env = env
	return &sj
}

// learnTiming is the last learning measured on this cache: how long the
// chain's phases took to build and how long learning them took.
type learnTiming struct {
	Built time.Duration `json:"built"`
	Took  time.Duration `json:"took"`
}

func (lr *Learner) learnTimingPath() string {
	return filepath.Join(lr.CacheDir, "learn-timing.json")
}

// recordLearning keeps how long learning chain took, for the estimate of
// the next learner (learningEstimate).
func (lr *Learner) recordLearning(chain []*layers.Layer, took time.Duration) {
	t := learnTiming{Built: chainBuildTime(chain), Took: took}
	data, _ := json.Marshal(t)
	_ = os.WriteFile(lr.learnTimingPath(), data, 0o600)
}

// learningEstimate is how long learning chain should take, scaled from the
// last learning measured (0 when none was): never the phases' build time,
// which learning (a twin build and a tree comparison per phase) exceeds.
func (lr *Learner) learningEstimate(chain []*layers.Layer) time.Duration {
	data, err := os.ReadFile(lr.learnTimingPath())
	var t learnTiming
	if err != nil || json.Unmarshal(data, &t) != nil || t.Built <= 0 || t.Took <= 0 {
		return 0
	}
	return time.Duration(float64(t.Took) * float64(chainBuildTime(chain)) / float64(t.Built))
}

func chainBuildTime(chain []*layers.Layer) time.Duration {
	var d time.Duration
	for _, l := range chain {
		d += l.Meta.Duration
	}
	return d
}

// announceLearning records the chain this process learns, for the hook
// deciding whether to wait for it and a build about to rebuild its chain;
// the returned function takes it back.
func (lr *Learner) announceLearning(pkg string, chain []*layers.Layer) func() {
	l := results.Learning{Started: time.Now(), Estimate: lr.learningEstimate(chain)}
	for _, layer := range chain {
		l.Layers = append(l.Layers, layer.ID)
		l.Keys = append(l.Keys, layer.Meta.Key)
	}
	return results.AnnounceLearning(lr.CacheDir, pkg, l)
}

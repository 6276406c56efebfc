package learn

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
	"github.com/nixlayer/nixlayer/verdict"
)

// judgeLearned follows the unexplained bytes of a freshly learned chain
// into the chain's own outputs (when it has reached them) and records on
// every layer's map how each file reached them: the plan's prediction for
// the next resume. With classify, the phases that produced bytes reaching
// an output run once more with the chain's own paths (on scratch layers of
// sc); bytes that change again are the build's nondeterminism. Only bytes
// that reach an output are worth that rerun: elsewhere their cause does
// not matter. treesB are the synthetic build's layers, one per phase.
func (lr *Learner) judgeLearned(ctx context.Context, jobs []*phaserun.Job, plan *planner.Plan, chain []*layers.Layer, treesB []string, sc *phaserun.Scratch, classify bool, progress func(events.Event)) error {
	n := len(chain)
	top := chain[n-1]
	pathsA := top.Meta.Outputs
	topMap := lr.StoredMap(top.ID)
	if topMap == nil || len(topMap.Unexplained) == 0 {
		return nil
	}
	rootA, err := lr.Layers.Mount(top.ID)
	if err != nil {
		return err
	}
	defer lr.Layers.Unmount(top.ID)
	outputs := OutputDirs(rootA, pathsA)
	for name, dir := range outputs {
		if _, err := os.Lstat(dir); err != nil {
			delete(outputs, name)
		}
	}
	if len(outputs) == 0 {
		return nil // the chain ends before installing anything
	}
	reach, err := unexplained.Reaches(rootA, topMap.Unexplained, func(rel string) string { return topMap.PathIn(rel, pathsA) }, outputs)
	if err != nil {
		return err
	}
	reachByPath := map[string]rewrite.Reach{}
	for i, u := range topMap.Unexplained {
		reachByPath[u.Path] = reach[i]
	}
	causes := map[string]rewrite.Cause{}
	if classify && chainBuiltWith(chain, pathsA) {
		causes, err = lr.classify(ctx, jobs, plan, chain, treesB, topMap, reachByPath, sc, progress)
		if err != nil {
			return err
		}
	}
	return lr.annotateMaps(chain, reachByPath, causes)
}

// annotateMaps records on the maps of a chain's layers how each
// unexplained file reached the outputs of the last build judged on them
// (the plan's prediction for the next resume) and, when known, its cause.
func (lr *Learner) annotateMaps(chain []*layers.Layer, reach map[string]rewrite.Reach, causes map[string]rewrite.Cause) error {
	for _, l := range chain {
		m := lr.StoredMap(l.ID)
		if m == nil {
			continue
		}
		for i := range m.Unexplained {
			u := &m.Unexplained[i]
			if r, ok := reach[u.Path]; ok {
				u.Learned = &r
			}
			if c, ok := causes[u.Path]; ok {
				u.Cause = c
			}
		}
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := lr.Layers.SetData(l.ID, layers.DataPathMap, data); err != nil {
			return err
		}
	}
	return nil
}

// classify reruns, with the chain's own paths, each phase that produced
// unexplained bytes reaching an output, and compares those files with the
// chain's and the synthetic build's: it returns the cause of each.
func (lr *Learner) classify(ctx context.Context, jobs []*phaserun.Job, plan *planner.Plan, chain []*layers.Layer, treesB []string, topMap *rewrite.Map, reach map[string]rewrite.Reach, sc *phaserun.Scratch, progress func(events.Event)) (map[string]rewrite.Cause, error) {
	producer := lr.Producers(chain)
	byPhase := map[int][]string{}
	for _, u := range topMap.Unexplained {
		if reach[u.Path].Rule != "" && len(u.Offsets) > 0 {
			byPhase[producer[u.Path]] = append(byPhase[producer[u.Path]], u.Path)
		}
	}
	phases := make([]int, 0, len(byPhase))
	for i := range byPhase {
		phases = append(phases, i)
	}
	sort.Ints(phases)
	causes := map[string]rewrite.Cause{}
	for _, i := range phases {
		phase := plan.Phases[i].Name
		progress(events.Event{Kind: events.EventLearn, Phase: phase, Message: fmt.Sprintf("learning: %s again with the same paths, to tell its nondeterminism from path dependence (%d file(s) reach the outputs)", phase, len(byPhase[i]))})
		// On the layer the chain's phase ran on (a rewrite layer, when it
		// resumed on layers of another derivation), as that derivation.
		parent, state := chain[i].Parent, jobs[i].Probe.Start
		if parent != "" {
			var err error
			if state, err = lr.Run.LoadState(parent); err != nil {
				return nil, err
			}
		}
		id, _, err := sc.Run(ctx, jobs[i], i, parent, state, "rerun")
		if err != nil {
			return nil, err
		}
		m := lr.StoredMap(chain[i].ID)
		if m == nil {
			continue
		}
		for _, rel := range byPhase[i] {
			cause, err := lr.compareRerun(chain[i].ID, treesB[i], id, m, rel, chain[i].Meta.Outputs)
			if err != nil {
				return nil, err
			}
			causes[rel] = cause
		}
	}
	return causes, nil
}

// compareRerun reads one file from the chain layer, the synthetic layer
// and the rerun layer, and says what caused its unexplained bytes.
func (lr *Learner) compareRerun(layerA, layerB, layerA2 string, m *rewrite.Map, rel string, pathsA map[string]string) (rewrite.Cause, error) {
	// unreadable: the entry is not a regular file of the layer (a symlink
	// out of it, a FIFO, a device) or too big to compare; the layer itself
	// could not be read when err is set.
	read := func(id, name string) (data []byte, unreadable bool, err error) {
		root, err := lr.Layers.Mount(id)
		if err != nil {
			return nil, false, err
		}
		defer lr.Layers.Unmount(id)
		dir, err := os.OpenRoot(root)
		if err != nil {
			return nil, false, fmt.Errorf("opening layer %s: %w", id, err)
		}
		defer dir.Close()
		data, err = treefile.Read(dir, filepath.FromSlash(name), treefile.MaxCompared)
		return data, err != nil, nil
	}
	inA := m.PathIn(rel, pathsA)
	a, unreadA, err := read(layerA, inA)
	if err != nil {
		return "", err
	}
	b, unreadB, err := read(layerB, rel)
	if err != nil {
		return "", err
	}
	a2, unreadA2, err := read(layerA2, inA)
	if err != nil {
		return "", err
	}
	if unreadA || unreadB || unreadA2 {
		// Gone in the rerun, or not bytes nixlayer may compare: path
		// dependence, the answer that never lets the result pass as exact.
		return rewrite.CausePath, nil
	}
	var fm *rewrite.FileMap
	for k := range m.Files {
		if m.Files[k].Path == rel {
			fm = &m.Files[k]
		}
	}
	if unexplained.Nondeterministic(a, b, a2, fm) {
		return rewrite.CauseNondeterministic, nil
	}
	return rewrite.CausePath, nil
}

// chainBuiltWith reports whether every layer of the chain was built with
// the given output paths (a rerun with them reproduces each phase's world).
func chainBuiltWith(chain []*layers.Layer, paths map[string]string) bool {
	for _, l := range chain {
		if !maps.Equal(l.Meta.Outputs, paths) {
			return false
		}
	}
	return true
}

// Producers finds, for each unexplained file of the reused chain, the
// phase that produced it: the first layer whose map lists it. chain is
// the reused phase layers, oldest first.
func (lr *Learner) Producers(chain []*layers.Layer) map[string]int {
	first := map[string]int{}
	for i, l := range chain {
		m := lr.StoredMap(l.ID)
		if m == nil {
			continue
		}
		for _, u := range m.Unexplained {
			if _, ok := first[u.Path]; !ok {
				first[u.Path] = i
			}
		}
	}
	return first
}

// JudgeOutputs decides whether a build on rewritten layers is exact: the
// rewrite's unexplained bytes (in tree, the rewritten layer the later
// phases started from) are followed into the finished outputs (outputs:
// name → directory). Bytes the learner found nondeterministic do not count.
func (lr *Learner) JudgeOutputs(v *rewrite.Verdict, m *rewrite.Map, chain []*layers.Layer, phases []planner.PhasePlan, tree string, paths, outputs map[string]string) (*verdict.Exactness, error) {
	if len(v.Failed) > 0 {
		return verdict.Failed(v, lr.Producers(chain), planner.PhaseNames(phases)), nil
	}
	resolve := func(rel string) string { return rel }
	if m != nil {
		resolve = func(rel string) string { return m.PathIn(rel, paths) }
	}
	reach, err := unexplained.Reaches(tree, v.Unexplained, resolve, outputs)
	if err != nil {
		return nil, fmt.Errorf("following unexplained bytes into the outputs: %w", err)
	}
	judged := make([]*rewrite.Reach, len(reach))
	byPath := map[string]rewrite.Reach{}
	for i := range reach {
		judged[i] = &reach[i]
		byPath[v.Unexplained[i].Path] = reach[i]
	}
	// The next plan predicts from this build's outputs.
	if err := lr.annotateMaps(chain, byPath, nil); err != nil {
		lr.Log.Warn("recording how unexplained bytes reached the outputs", zap.Error(err))
	}
	names := planner.PhaseNames(phases)
	return verdict.Decide(verdict.Judge(v.Unexplained, judged, lr.Producers(chain), names), names), nil
}

// PredictExactness is the plan's view of a rewrite with map m over the
// reused chain (verdict.Predict).
func (lr *Learner) PredictExactness(m *rewrite.Map, chain []*layers.Layer, phases []planner.PhasePlan) *verdict.Exactness {
	return verdict.Predict(m, lr.Producers(chain), planner.PhaseNames(phases))
}

// OutputDirs maps output names to their directories in a layer's tree.
func OutputDirs(root string, outputs map[string]string) map[string]string {
	dirs := map[string]string{}
	for name, p := range outputs {
		dirs[name] = filepath.Join(root, "store", filepath.Base(p))
	}
	return dirs
}

func (lr *Learner) SaveExactness(id string, ex *verdict.Exactness) {
	if data, err := json.Marshal(ex); err == nil {
		_ = lr.Layers.SetData(id, layers.DataExactness, data)
	}
}

func (lr *Learner) LoadExactness(id string) *verdict.Exactness {
	data, err := lr.Layers.Data(id, layers.DataExactness)
	if err != nil {
		return nil
	}
	var ex verdict.Exactness
	if json.Unmarshal(data, &ex) != nil {
		return nil
	}
	return &ex
}

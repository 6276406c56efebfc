package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
)

// judgeLearned follows the unexplained bytes of a freshly learned chain
// into the chain's own outputs (when it has reached them) and records on
// every layer's map how each file reached them: the plan's prediction for
// the next resume. With classify, the phases that produced bytes reaching
// an output run once more with the chain's own paths (on scratch layers of
// sc); bytes that change again are the build's nondeterminism. Only bytes
// that reach an output are worth that rerun: elsewhere their cause does
// not matter. treesB are the synthetic build's layers, one per phase.
func (e *Engine) judgeLearned(ctx context.Context, jobs []*phaserun.Job, plan *planner.Plan, chain []*layers.Layer, treesB []string, sc *phaserun.Scratch, classify bool, progress func(events.Event)) error {
	n := len(chain)
	top := chain[n-1]
	pathsA := top.Meta.Outputs
	topMap := e.storedMap(top.ID)
	if topMap == nil || len(topMap.Unexplained) == 0 {
		return nil
	}
	rootA, err := e.layers.Mount(top.ID)
	if err != nil {
		return err
	}
	defer e.layers.Unmount(top.ID)
	outputs := outputDirs(rootA, pathsA)
	for name, dir := range outputs {
		if _, err := os.Lstat(dir); err != nil {
			delete(outputs, name)
		}
	}
	if len(outputs) == 0 {
		return nil // the chain ends before installing anything
	}
	reach, err := rewrite.Reaches(rootA, topMap.Unexplained, func(rel string) string { return topMap.PathIn(rel, pathsA) }, outputs)
	if err != nil {
		return err
	}
	reachByPath := map[string]rewrite.Reach{}
	for i, u := range topMap.Unexplained {
		reachByPath[u.Path] = reach[i]
	}
	causes := map[string]rewrite.Cause{}
	if classify && chainBuiltWith(chain, pathsA) {
		causes, err = e.classify(ctx, jobs, plan, chain, treesB, topMap, reachByPath, sc, progress)
		if err != nil {
			return err
		}
	}
	return e.annotateMaps(chain, reachByPath, causes)
}

// annotateMaps records on the maps of a chain's layers how each
// unexplained file reached the outputs of the last build judged on them
// (the plan's prediction for the next resume) and, when known, its cause.
func (e *Engine) annotateMaps(chain []*layers.Layer, reach map[string]rewrite.Reach, causes map[string]rewrite.Cause) error {
	for _, l := range chain {
		m := e.storedMap(l.ID)
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
		if err := e.layers.SetData(l.ID, layers.DataPathMap, data); err != nil {
			return err
		}
	}
	return nil
}

// classify reruns, with the chain's own paths, each phase that produced
// unexplained bytes reaching an output, and compares those files with the
// chain's and the synthetic build's: it returns the cause of each.
func (e *Engine) classify(ctx context.Context, jobs []*phaserun.Job, plan *planner.Plan, chain []*layers.Layer, treesB []string, topMap *rewrite.Map, reach map[string]rewrite.Reach, sc *phaserun.Scratch, progress func(events.Event)) (map[string]rewrite.Cause, error) {
	producer := e.producers(chain)
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
			if state, err = e.run.LoadState(parent); err != nil {
				return nil, err
			}
		}
		id, _, err := sc.Run(ctx, jobs[i], i, parent, state, "rerun")
		if err != nil {
			return nil, err
		}
		m := e.storedMap(chain[i].ID)
		if m == nil {
			continue
		}
		for _, rel := range byPhase[i] {
			cause, err := e.compareRerun(chain[i].ID, treesB[i], id, m, rel, chain[i].Meta.Outputs)
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
func (e *Engine) compareRerun(layerA, layerB, layerA2 string, m *rewrite.Map, rel string, pathsA map[string]string) (rewrite.Cause, error) {
	// unreadable: the entry is not a regular file of the layer (a symlink
	// out of it, a FIFO, a device) or too big to compare; the layer itself
	// could not be read when err is set.
	read := func(id, name string) (data []byte, unreadable bool, err error) {
		root, err := e.layers.Mount(id)
		if err != nil {
			return nil, false, err
		}
		defer e.layers.Unmount(id)
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
	if rewrite.Nondeterministic(a, b, a2, fm) {
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

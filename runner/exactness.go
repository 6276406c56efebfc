package runner

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
)

// producers finds, for each unexplained file of the reused chain, the
// phase that produced it: the first layer whose map lists it. chain is
// the reused phase layers, oldest first.
func (e *Engine) producers(chain []*layers.Layer) map[string]int {
	first := map[string]int{}
	for i, l := range chain {
		m := e.storedMap(l.ID)
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

// judgeOutputs decides whether a build on rewritten layers is exact: the
// rewrite's unexplained bytes (in tree, the rewritten layer the later
// phases started from) are followed into the finished outputs (outputs:
// name → directory). Bytes the learner found nondeterministic do not count.
func (e *Engine) judgeOutputs(v *rewrite.Verdict, m *rewrite.Map, chain []*layers.Layer, phases []planner.PhasePlan, tree string, paths, outputs map[string]string) (*verdict.Exactness, error) {
	if len(v.Failed) > 0 {
		return verdict.Failed(v, e.producers(chain), planner.PhaseNames(phases)), nil
	}
	resolve := func(rel string) string { return rel }
	if m != nil {
		resolve = func(rel string) string { return m.PathIn(rel, paths) }
	}
	reach, err := rewrite.Reaches(tree, v.Unexplained, resolve, outputs)
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
	if err := e.annotateMaps(chain, byPath, nil); err != nil {
		e.log.Warn("recording how unexplained bytes reached the outputs", zap.Error(err))
	}
	names := planner.PhaseNames(phases)
	return verdict.Decide(verdict.Judge(v.Unexplained, judged, e.producers(chain), names), names), nil
}

// predictExactness is the plan's view of a rewrite with map m over the
// reused chain (verdict.Predict).
func (e *Engine) predictExactness(m *rewrite.Map, chain []*layers.Layer, phases []planner.PhasePlan) *verdict.Exactness {
	return verdict.Predict(m, e.producers(chain), planner.PhaseNames(phases))
}

// outputDirs maps output names to their directories in a layer's tree.
func outputDirs(root string, outputs map[string]string) map[string]string {
	dirs := map[string]string{}
	for name, p := range outputs {
		dirs[name] = filepath.Join(root, "store", filepath.Base(p))
	}
	return dirs
}

func (e *Engine) saveExactness(id string, ex *verdict.Exactness) {
	if data, err := json.Marshal(ex); err == nil {
		_ = e.layers.SetData(id, layers.DataExactness, data)
	}
}

func (e *Engine) loadExactness(id string) *verdict.Exactness {
	data, err := e.layers.Data(id, layers.DataExactness)
	if err != nil {
		return nil
	}
	var ex verdict.Exactness
	if json.Unmarshal(data, &ex) != nil {
		return nil
	}
	return &ex
}

package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/nixlayer/nixlayer/internal/fault"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/shellstate"
)

// pathMapKey names the layer data holding a chain's path-dependency map.
const pathMapKey = "pathmap"

// pathMap returns the path-dependency map of the chain that ends in top
// and covers the first n phases. The first resume that needs it learns it:
// the n phases run a second time, on scratch layers, with synthetic output
// paths of the same length, and the two trees are compared byte by byte.
// The map is kept with the chain, so later resumes pay nothing.
func (e *Engine) pathMap(ctx context.Context, j *job, plan *Plan, top string, n int, progress func(Event)) (*rewrite.Map, error) {
	if data, err := e.layers.Data(top, pathMapKey); err == nil {
		var m rewrite.Map
		if err := json.Unmarshal(data, &m); err == nil {
			return &m, nil
		}
		e.log.Warn("unreadable path map; learning it again", zap.String("layer", top))
	}
	topLayer, err := e.layers.Get(top)
	if err != nil {
		return nil, err
	}
	// The second build must differ from the chain's own build in the output
	// paths only, so it runs with the environment of the derivation that
	// built the chain (later phases' attributes may differ in the current one).
	base := j
	if topLayer.Meta.DrvPath != "" && topLayer.Meta.DrvPath != j.drv.Path {
		if oj, err := e.prepare(ctx, topLayer.Meta.DrvPath, io.Discard); err == nil && oj.splittable == j.splittable {
			base = oj
		} else {
			e.log.Warn("the derivation that built the reused layers is gone; learning with the current one", zap.String("drv", topLayer.Meta.DrvPath), zap.Error(err))
		}
	}
	pathsA := topLayer.Meta.Outputs
	pathsB := map[string]string{}
	baseToB := map[string]string{}
	for name, p := range base.drv.Outputs {
		a := pathsA[name]
		if a == "" {
			return nil, fmt.Errorf("layer %s does not record the path of output %s", top, name)
		}
		pathsB[name] = rewrite.SyntheticPath(a)
		baseToB[p] = pathsB[name]
	}
	progress(Event{Kind: "learn", Message: fmt.Sprintf("learning which bytes depend on the output path: running %d phases again with a synthetic path (once per chain)", n)})
	t0 := time.Now()
	sj := scratchJob(base, pathsB, baseToB)
	state := base.probe.Start
	if state != nil {
		state = rewriteState(state, baseToB)
	}
	var created []string
	defer func() {
		if os.Getenv("NIXLAYER_KEEP_SCRATCH") != "" { // debugging the path map
			return
		}
		for i := len(created) - 1; i >= 0; i-- {
			e.layers.Unmount(created[i])
			if err := e.layers.Delete(created[i]); err != nil {
				e.log.Warn("removing a scratch layer", zap.Error(err))
			}
		}
	}()
	etc, err := os.MkdirTemp(e.opts.CacheDir, "etc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(etc)
	parent := ""
	for i := 0; i < n; i++ {
		phase := plan.Phases[i].Name
		// No phase name: scratch layers never count as an earlier build.
		l, err := e.layers.Create(parent, layers.Meta{DrvPath: j.drv.Path, DrvName: j.drv.Name, Outputs: pathsB, Note: "learn " + phase})
		if err != nil {
			return nil, err
		}
		created = append(created, l.ID)
		root, err := e.layers.Mount(l.ID)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if err := writeAttrsFiles(sj, filepath.Join(root, "build")); err != nil {
				return nil, err
			}
		}
		var logTail tailWriter
		s := step{root: root, etc: etc, mode: "phase", phase: phase, last: i == len(plan.Phases)-1, log: &logTail}
		if plan.Whole {
			s.mode = "whole"
		} else if state != nil {
			s.restore = state.Script()
		}
		r, err := e.runStep(ctx, sj, s)
		e.layers.Unmount(l.ID)
		if err != nil {
			return nil, err
		}
		if r.exit != 0 {
			return nil, fmt.Errorf("%s failed (exit %d) when run again with a synthetic output path, so the path map cannot be learned:\n%s", phase, r.exit, logTail.String())
		}
		if !plan.Whole {
			caps, err := shellstate.ParseDumps(r.dumps)
			if err != nil || len(caps) < 2 {
				return nil, fmt.Errorf("%s: shell state lost while learning the path map: %v", phase, err)
			}
			state = shellstate.Diff(caps[0], caps[1])
		}
		parent = l.ID
		fault.Point("in-learn")
	}
	treeA, err := e.layers.Mount(top)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(top)
	treeB, err := e.layers.Mount(parent)
	if err != nil {
		return nil, err
	}
	m, err := rewrite.Learn(treeA, treeB, pathsA, pathsB)
	e.layers.Unmount(parent)
	if err != nil {
		return nil, fmt.Errorf("learning the path map of %s: %w", j.drv.Name, err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := e.layers.SetData(top, pathMapKey, data); err != nil {
		return nil, err
	}
	progress(Event{Kind: "learned", Elapsed: time.Since(t0), Message: fmt.Sprintf("path map learned in %s (exact: %v)", time.Since(t0).Round(time.Millisecond), m.Exact())})
	return m, nil
}

// scratchJob is j with other output paths: the derivation's outputs and
// every environment value that mentions them.
func scratchJob(j *job, outputs map[string]string, curTo map[string]string) *job {
	sj := *j
	d := *j.drv
	d.Outputs = outputs
	sj.drv = &d
	sj.env = map[string]string{}
	for k, v := range j.env {
		for c, b := range curTo {
			v = strings.ReplaceAll(v, c, b)
		}
		sj.env[k] = v
	}
	if d.StructuredAttrs() {
		env := map[string]string{}
		for k, v := range d.Env {
			for c, b := range curTo {
				v = strings.ReplaceAll(v, c, b)
			}
			env[k] = v
		}
		d.Env = env
	}
	return &sj
}

func rewriteState(d *shellstate.Delta, old2new map[string]string) *shellstate.Delta {
	data, _ := json.Marshal(d)
	for o, n := range old2new {
		data = []byte(strings.ReplaceAll(string(data), o, n))
	}
	var out shellstate.Delta
	if json.Unmarshal(data, &out) != nil {
		return d
	}
	return &out
}

// tailWriter keeps the last lines written, for error messages.
type tailWriter struct{ buf []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = t.buf[len(t.buf)-8192:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return tail(string(t.buf), 15) }

var _ io.Writer = (*tailWriter)(nil)

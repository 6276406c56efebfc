package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/shellstate"
)

// pathMapKey names the layer data holding the path-dependency map of the
// chain that ends in the layer.
const pathMapKey = "pathmap"

// pathMap returns the path-dependency map of the chain that ends in top
// (the first n phases). A chain's maps are learned once, by running its
// phases a second time on scratch layers with synthetic output paths of the
// same length and comparing the trees after every phase; either in the
// background after a cold build (nixlayer learn) or here, at the first
// resume that needs one.
func (e *Engine) pathMap(ctx context.Context, j *job, plan *Plan, top string, n int, progress func(Event)) (*rewrite.Map, error) {
	if m := e.storedMap(top); m != nil {
		return m, nil
	}
	unlock, err := e.lockFile(ctx, "learn-"+j.pkg, func() {
		progress(Event{Kind: EventWait, Message: "waiting for the path map being learned in the background"})
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	if m := e.storedMap(top); m != nil { // learned while we waited
		return m, nil
	}
	chain, err := e.phaseChain(top, n)
	if err != nil {
		return nil, err
	}
	if err := e.learnChain(ctx, j, plan, chain, progress); err != nil {
		return nil, err
	}
	if m := e.storedMap(top); m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("no path map for layer %s after learning", top)
}

func (e *Engine) storedMap(id string) *rewrite.Map {
	data, err := e.layers.Data(id, pathMapKey)
	if err != nil {
		return nil
	}
	var m rewrite.Map
	if err := json.Unmarshal(data, &m); err != nil {
		e.log.Warn("unreadable path map; learning it again", zap.String("layer", id))
		return nil
	}
	return &m
}

// phaseChain lists the phase layers of the chain ending in top, oldest
// first, skipping rewrite layers between phases.
func (e *Engine) phaseChain(top string, n int) ([]*layers.Layer, error) {
	var chain []*layers.Layer
	for id := top; id != "" && len(chain) < n; {
		l, err := e.layers.Get(id)
		if err != nil {
			return nil, err
		}
		if l.Meta.KindOf() == layers.KindPhase {
			chain = append([]*layers.Layer{l}, chain...)
		}
		id = l.Parent
	}
	if len(chain) != n {
		return nil, fmt.Errorf("the chain under layer %s has %d phase layers, want %d", top, len(chain), n)
	}
	return chain, nil
}

// Learn learns the path maps of the newest cached chain of a derivation, so
// that the first resume after an edit needs no second build. `nixlayer
// build` starts it in the background after a cold build.
// ro applies to pushing the learned maps to the config's pushTo.
func (e *Engine) Learn(ctx context.Context, drvPath string, ro RegistryOptions, progress func(Event)) error {
	if progress == nil {
		progress = func(Event) {}
	}
	j, err := e.prepare(ctx, drvPath, io.Discard)
	if err != nil {
		return err
	}
	plan, err := e.plan(j, PlanOptions{RequireVerified: true})
	if err != nil {
		return err
	}
	top := lastReused(plan)
	if top == "" {
		return fmt.Errorf("%s has no cached layers to learn from: build it first", j.drv.Name)
	}
	unlock, err := e.lockFile(ctx, "learn-"+j.pkg, nil)
	if err != nil {
		return err
	}
	defer unlock()
	if e.storedMap(top) != nil {
		progress(Event{Kind: EventLearned, Message: "path maps already learned"})
		e.pushBuilt(ctx, top, ro, progress)
		return nil
	}
	chain, err := e.phaseChain(top, len(plan.Phases))
	if err != nil {
		return err
	}
	if err := e.learnChain(ctx, j, plan, chain, progress); err != nil {
		return err
	}
	// The path maps travel with the chain: push it again (the blobs are
	// there already; only the records change).
	e.pushBuilt(ctx, top, ro, progress)
	return nil
}

// learnChain runs the chain's phases again with synthetic output paths and
// stores, on every layer of the chain, the map of what depends on them.
func (e *Engine) learnChain(ctx context.Context, j *job, plan *Plan, chain []*layers.Layer, progress func(Event)) error {
	top := chain[len(chain)-1]
	// The second build must differ from the chain's own build in the output
	// paths only, so it runs with the environment of the derivation that
	// built the chain (later phases' attributes may differ in the current one).
	base := j
	if top.Meta.DrvPath != "" && top.Meta.DrvPath != j.drv.Path {
		if oj, err := e.prepare(ctx, top.Meta.DrvPath, io.Discard); err == nil && oj.splittable == j.splittable {
			base = oj
		} else {
			e.log.Warn("the derivation that built the reused layers is gone; learning with the current one", zap.String("drv", top.Meta.DrvPath), zap.Error(err))
		}
	}
	pathsA := top.Meta.Outputs
	pathsB := map[string]string{}
	baseToB := map[string]string{}
	for name, p := range base.drv.Outputs {
		a := pathsA[name]
		if a == "" {
			return fmt.Errorf("layer %s does not record the path of output %s", top.ID, name)
		}
		pathsB[name] = rewrite.SyntheticPath(a)
		baseToB[p] = pathsB[name]
	}
	n := len(chain)
	progress(Event{Kind: EventLearn, Message: fmt.Sprintf("learning which bytes depend on the output path: running %d phases again with a synthetic path (once per chain)", n)})
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
		return err
	}
	defer os.RemoveAll(etc)
	parent := ""
	exact := true
	for i := 0; i < n; i++ {
		phase := plan.Phases[i].Name
		progress(Event{Kind: EventLearn, Phase: phase, Index: i + 1, Total: n, Message: fmt.Sprintf("learning: [%d/%d] %s with the synthetic path", i+1, n, phase)})
		// No phase name: scratch layers never count as an earlier build.
		l, err := e.layers.Create(parent, layers.Meta{Kind: layers.KindLearnScratch, DrvPath: j.drv.Path, DrvName: j.drv.Name, Outputs: pathsB, Note: "learn " + phase})
		if err != nil {
			return err
		}
		created = append(created, l.ID)
		root, err := e.layers.Mount(l.ID)
		if err != nil {
			return err
		}
		if i == 0 {
			if err := writeAttrsFiles(sj, filepath.Join(root, "build")); err != nil {
				return err
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
		if err != nil {
			e.layers.Unmount(l.ID)
			return err
		}
		if r.exit != 0 {
			e.layers.Unmount(l.ID)
			return fmt.Errorf("%s failed (exit %d) when run again with a synthetic output path, so the path map cannot be learned:\n%s", phase, r.exit, logTail.String())
		}
		if !plan.Whole {
			caps, err := shellstate.ParseDumps(r.dumps)
			if err != nil || len(caps) < 2 {
				e.layers.Unmount(l.ID)
				return fmt.Errorf("%s: shell state lost while learning the path map: %v", phase, err)
			}
			state = shellstate.Diff(caps[0], caps[1])
		}
		parent = l.ID
		fault.Point(fault.InLearn)
		m, err := e.learnLayer(chain[i], root, pathsB)
		e.layers.Unmount(l.ID)
		if err != nil {
			return err
		}
		exact = exact && m.Exact()
	}
	progress(Event{Kind: EventLearned, Elapsed: time.Since(t0), Message: fmt.Sprintf("path maps learned in %s (exact: %v)", time.Since(t0).Round(time.Millisecond), exact)})
	return nil
}

// learnLayer compares one chain layer with its scratch twin and keeps the
// map with the chain layer.
func (e *Engine) learnLayer(l *layers.Layer, treeB string, pathsB map[string]string) (*rewrite.Map, error) {
	treeA, err := e.layers.Mount(l.ID)
	if err != nil {
		return nil, err
	}
	defer e.layers.Unmount(l.ID)
	m, err := rewrite.Learn(treeA, treeB, l.Meta.Outputs, pathsB)
	if err != nil {
		return nil, fmt.Errorf("learning the path map of %s: %w", l.Meta.Phase, err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return m, e.layers.SetData(l.ID, pathMapKey, data)
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

// rewriteState gives a shell state the same output-path substitution the
// tree gets (shell text holds whole paths, never compiler fragments).
func rewriteState(d *shellstate.Delta, old2new map[string]string) *shellstate.Delta {
	data, _ := json.Marshal(d)
	var out shellstate.Delta
	if json.Unmarshal([]byte(rewrite.Text(string(data), old2new)), &out) != nil {
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

// StartBackgroundLearn runs `nixlayer learn` for drvPath in a detached
// process (its output in <cache>/learn.log), so the first resume after an
// edit does not have to build the chain twice. The running binary must be
// nixlayer.
func (e *Engine) StartBackgroundLearn(drvPath string) (pid int, logPath string, err error) {
	if os.Getenv("NIXLAYER_BACKGROUND_LEARN") == "0" {
		return 0, "", fmt.Errorf("background learning is off (NIXLAYER_BACKGROUND_LEARN=0)")
	}
	self, err := os.Executable()
	if err != nil {
		return 0, "", err
	}
	logPath = filepath.Join(e.opts.CacheDir, "learn.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, "", err
	}
	defer logf.Close()
	cmd := exec.Command(self, "learn", "--cache", e.opts.CacheDir, drvPath)
	// Detached, with no fd of ours: Nix waits for the hook's pipes to close.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	pid = cmd.Process.Pid
	cmd.Process.Release()
	return pid, logPath, nil
}

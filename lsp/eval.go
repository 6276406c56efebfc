package lsp

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.lsp.dev/protocol"
	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixexpr"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

// snapshot is a buffer's content at one moment.
type snapshot struct {
	uri  protocol.DocumentURI
	path string
	text []byte
}

// scheduleEval evaluates a buffer's target after the debounce delay,
// cancelling a pending or running evaluation of the same buffer.
func (s *server) scheduleEval(uri protocol.DocumentURI) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[uri]
	if d == nil {
		return
	}
	s.stopEval(d)
	d.evalGen++
	gen := d.evalGen
	if d.eval == nil {
		d.pending = "… evaluating"
	}
	ctx, cancel := context.WithCancel(s.ctx)
	d.evalCancel = cancel
	d.evalTimer = time.AfterFunc(s.opts.Debounce, func() {
		s.safely("evaluation", func() { s.runEval(ctx, d, gen) })
	})
}

// stopEval cancels a buffer's pending evaluation; s.mu is held.
func (s *server) stopEval(d *document) {
	if d.evalTimer != nil {
		d.evalTimer.Stop()
	}
	if d.evalCancel != nil {
		d.evalCancel()
	}
}

func (s *server) runEval(ctx context.Context, d *document, gen int) {
	s.mu.Lock()
	if d.evalGen != gen || ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	snap := snapshot{uri: d.uri, path: d.path, text: d.text}
	s.mu.Unlock()
	t0 := time.Now()
	ev := s.evaluate(ctx, snap)
	if ctx.Err() != nil {
		return // superseded
	}
	s.mu.Lock()
	if d.evalGen != gen {
		s.mu.Unlock()
		return
	}
	s.setEval(d, ev, snap)
	s.mu.Unlock()
	s.log.Debug("evaluated", zap.String("uri", string(snap.uri)), zap.Duration("took", time.Since(t0)), zap.String("err", ev.Err))
	s.publishDiagnostics(d)
	s.lensesChanged()
}

// setEval installs an evaluation; s.mu is held. The failures the cache
// remembers become diagnostics (until the derivation is built again).
func (s *server) setEval(d *document, ev *Evaluation, snap snapshot) {
	for _, p := range ev.Packages {
		p.State = d.states[p.DrvPath]
	}
	d.eval, d.pending = ev, ""
	d.evalDiags = nil
	if ev.Err != "" {
		d.evalDiags = []protocol.Diagnostic{evalDiagnostic(ev.Err, snap)}
	}
	if d.running == nil {
		d.buildDiag = failureDiagnostics(d)
	}
}

// errPos finds "at FILE:LINE:COL" in Nix's error messages.
var errPos = regexp.MustCompile(`at («stdin»|/[^:\s]+):(\d+):(\d+)`)

func evalDiagnostic(msg string, snap snapshot) protocol.Diagnostic {
	var pos protocol.Position
	for _, m := range errPos.FindAllStringSubmatch(msg, -1) {
		if m[1] == "«stdin»" || m[1] == snap.path {
			line, _ := strconv.Atoi(m[2])
			col, _ := strconv.Atoi(m[3])
			pos = protocol.Position{Line: uint32(max(line-1, 0)), Character: uint32(max(col-1, 0))}
			break
		}
	}
	return protocol.Diagnostic{
		Range:    protocol.Range{Start: pos, End: pos},
		Severity: protocol.DiagnosticSeverityError,
		Source:   "nixlayer",
		Message:  "nixlayer could not evaluate this package: " + msg,
	}
}

// evaluate instantiates the buffer's target and asks the runner for the
// plan of each derivation that matches a derivation call of the buffer.
func (s *server) evaluate(ctx context.Context, snap snapshot) *Evaluation {
	ev := &Evaluation{}
	defer func() { ev.Done = time.Now() }()
	s.mu.Lock()
	restricted := !s.settings.trusted()
	s.mu.Unlock()
	if restricted {
		ev.Err = "the workspace is not trusted (Restricted Mode): nixlayer evaluates and builds nothing in it, since evaluating Nix runs its code and can build"
		return ev
	}
	if !s.trusted(snap.path) {
		ev.Err = fmt.Sprintf("%s is outside the workspace folders, so nixlayer does not evaluate it", snap.path)
		return ev
	}
	found := s.findTarget(ctx, snap.path)
	ev.How, ev.Choices, ev.Chosen = found.How, found.Choices, found.Chosen
	if found.err != nil {
		ev.Err = found.err.Error()
		return ev
	}
	if t := found.Target; t.File != "" && !s.trusted(t.File) {
		ev.Err = fmt.Sprintf("the target file %s is outside the workspace folders, so nixlayer does not evaluate it", t.File)
		return ev
	}
	nt, evaluated, unsaved := found.nixTarget(snap)
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
		p := matchPackage(call, i, len(derivs), all)
		if p != nil && p.Texts == nil {
			p.Texts = attrTexts(call)
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
	eng, err := s.getEngine()
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
			p.History, p.Failure = h.Runs, failureOf(h.Failure)
		}
	}
	return ev
}

// failureOf is a failed phase the history remembers, as the build
// reported it.
func failureOf(r *buildindex.PhaseRun) *runner.PhaseError {
	if r == nil {
		return nil
	}
	return &runner.PhaseError{Drv: r.Drv, Phase: r.Phase, Exit: r.Exit, LogTail: r.LogTail, Layer: r.Layer}
}

// getEngine connects to the engine on first use.
func (s *server) getEngine() (api.Service, error) {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	if s.engine == nil {
		connect := s.opts.Connect
		if connect == nil {
			connect = func() (api.Service, error) {
				return api.OpenLocal(runner.Options{CacheDir: s.opts.CacheDir, Logger: s.log})
			}
		}
		e, err := connect()
		if err != nil {
			return nil, fmt.Errorf("opening the layer cache: %w", err)
		}
		s.engine = e
	}
	return s.engine, nil
}

func (s *server) closeEngine() {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	if s.engine != nil {
		s.engine.Close()
		s.engine = nil
	}
}

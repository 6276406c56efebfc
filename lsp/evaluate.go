package lsp

import (
	"context"
	"fmt"
	"time"

	"go.lsp.dev/protocol"
	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/lsp/lens"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/runner"
)

// This file keeps each open buffer's evaluation current: evaluated
// (lsp/target) after edits settle, and updated as other processes change
// its results' states and the background work on its packages.

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
func (s *server) setEval(d *document, ev *target.Evaluation, snap snapshot) {
	for _, p := range ev.Packages {
		p.State = d.states[p.DrvPath]
	}
	d.eval, d.pending = ev, ""
	d.evalDiags = nil
	if ev.Err != "" {
		d.evalDiags = []protocol.Diagnostic{lens.EvalDiagnostic(ev.Err, snap.path)}
	}
	if d.running == nil {
		d.buildDiag = lens.FailureDiagnostics(d.file, d.eval)
	}
}

// evaluate evaluates a buffer's target in the workspace as it is now.
func (s *server) evaluate(ctx context.Context, snap snapshot) *target.Evaluation {
	return s.targets.Evaluate(ctx, s.workspace(), snap.path, snap.text, s.getEngine)
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

// watchResults follows the states of the open documents' results and the
// background work on their packages, which other processes change: on a
// change it updates the documents' evaluations, tells the client of a
// result's new state and refreshes the lenses.
func (s *server) watchResults(ctx context.Context, every time.Duration) {
	poll.Every(ctx, every, func() bool {
		evs, changed := s.updateResults()
		for _, ev := range evs {
			s.notify(lens.ResultStateMethod, ev)
		}
		if changed {
			s.lensesChanged()
		}
		return false
	})
}

// updateResults reads the records of the open documents' packages and the
// background jobs on the cache, and installs what changed; it returns an
// event per changed result, and whether anything changed.
func (s *server) updateResults() ([]events.Event, bool) {
	s.mu.Lock()
	var docs []*document
	var drvs []string
	for _, d := range s.docs {
		if d.eval != nil {
			docs = append(docs, d)
			for _, p := range d.eval.Packages {
				drvs = append(drvs, p.DrvPath)
			}
		}
	}
	s.mu.Unlock()
	if len(drvs) == 0 {
		return nil, false
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil, false
	}
	rr, err := eng.Results(s.ctx, api.ResultsRequest{Drvs: drvs})
	if err != nil {
		s.log.Debug("reading result states", zap.Error(err))
		return nil, false
	}
	records := map[string]*results.Record{}
	for _, r := range rr.Results {
		records[r.Drv] = r
	}
	var evs []events.Event
	anyChange := false
	for _, d := range docs {
		s.mu.Lock()
		ev := d.eval
		s.mu.Unlock()
		next, changed := ev.WithResults(records, rr.Background)
		if next == nil {
			continue
		}
		anyChange = true
		s.mu.Lock()
		if d.eval == ev { // else a newer evaluation read the records itself
			d.eval = next
		}
		s.mu.Unlock()
		for _, r := range changed {
			evs = append(evs, r.Event())
		}
	}
	return evs, anyChange
}

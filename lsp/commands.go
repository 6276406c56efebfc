package lsp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/lsp/lens"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/runner"
)

// The commands (workspace/executeCommand: build, rebuild from a phase,
// cancel, a shell, a log, the target chosen, a phase's layer and what it
// changed) and the layer requests an editor's file explorer sends.

// executeParams is protocol.ExecuteCommandParams with the arguments and
// the progress token kept raw.
type executeParams struct {
	Command       string            `json:"command"`
	Arguments     []json.RawMessage `json:"arguments"`
	WorkDoneToken json.RawMessage   `json:"workDoneToken,omitempty"`
}

func (s *server) executeCommand(ctx context.Context, p executeParams) (any, error) {
	if len(p.Arguments) != 1 {
		return nil, lspError(jsonrpc2.InvalidParams, "%s takes one argument {\"uri\": …, \"phase\": …}, got %d", p.Command, len(p.Arguments))
	}
	var a lens.CommandArgs
	if err := json.Unmarshal(p.Arguments[0], &a); err != nil || a.URI == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s: the argument must be {\"uri\": …, \"phase\": …}", p.Command)
	}
	switch p.Command {
	case lens.CmdBuild:
		return s.build(ctx, a, "", p.WorkDoneToken)
	case lens.CmdRebuildFrom:
		if a.Phase == "" {
			return nil, lspError(jsonrpc2.InvalidParams, "%s needs a phase", p.Command)
		}
		return s.build(ctx, a, a.Phase, p.WorkDoneToken)
	case lens.CmdOpenShell:
		return s.openShell(a)
	case lens.CmdShowLog:
		return s.showLog(a)
	case lens.CmdBrowse:
		return s.browse(ctx, a)
	case lens.CmdDiff:
		return s.diff(ctx, a)
	case lens.CmdCancel:
		return s.cancel(a)
	case lens.CmdChooseTarget:
		return s.chooseTarget(ctx, a)
	}
	return nil, lspError(jsonrpc2.InvalidParams, "unknown command %q (known: %s)", p.Command, strings.Join(lens.Commands, ", "))
}

// cancel stops the document's running build (its request then answers
// RequestCancelled); true when one was running.
func (s *server) cancel(a lens.CommandArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[a.URI]
	if d == nil {
		return nil, lspError(jsonrpc2.InvalidParams, "document %s is not open", a.URI)
	}
	if d.cancelBuild == nil {
		return false, nil
	}
	d.cancelBuild()
	return true, nil
}

// pick finds the document and the evaluated package a command is about.
func (s *server) pick(a lens.CommandArgs) (*document, *target.Package, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[a.URI]
	if d == nil {
		return nil, nil, lspError(jsonrpc2.InvalidParams, "document %s is not open", a.URI)
	}
	if d.eval == nil {
		return d, nil, lspError(jsonrpc2.InvalidRequest, "%s has not been evaluated yet", d.path)
	}
	p := target.PickPackage(d.eval, a.Name)
	if p == nil {
		msg := "no evaluated derivation"
		if d.eval.Err != "" {
			msg = d.eval.Err
		}
		return d, nil, lspError(jsonrpc2.InvalidRequest, "%s: %s", d.path, msg)
	}
	return d, p, nil
}

// build evaluates the buffer (unsaved edits included), builds the chosen
// derivation with the runner and reports $/progress; the lenses follow the
// build live (refreshed as phases end, and while one runs); a failed phase
// becomes a diagnostic, kept in the cache's history until the next build.
func (s *server) build(ctx context.Context, a lens.CommandArgs, from string, token json.RawMessage) (any, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	d := s.docs[a.URI]
	if d == nil {
		s.mu.Unlock()
		return nil, lspError(jsonrpc2.InvalidParams, "document %s is not open", a.URI)
	}
	if d.running != nil {
		s.mu.Unlock()
		return nil, lspError(jsonrpc2.InvalidRequest, "a build of %s is already running", d.path)
	}
	d.running, d.cancelBuild = lens.NewRunning(time.Now()), cancel
	d.buildDiag = nil
	snap := snapshot{uri: d.uri, path: d.path, text: d.text}
	s.mu.Unlock()
	s.publishDiagnostics(d)
	s.lensesChanged()
	defer func() {
		s.mu.Lock()
		d.running, d.cancelBuild = nil, nil
		d.buildDiag = lens.FailureDiagnostics(d.file, d.eval)
		s.mu.Unlock()
		s.publishDiagnostics(d)
		s.lensesChanged()
	}()

	prog := s.beginProgress(ctx, token, "nixlayer: build "+d.path, cancel)
	defer prog.end()

	ev := s.evaluate(ctx, snap)
	if ctx.Err() != nil {
		prog.message, prog.outcome = "cancelled", lens.OutcomeCancelled
		return nil, protocol.ErrRequestCancelled
	}
	s.mu.Lock()
	s.setEval(d, ev, snap)
	s.mu.Unlock()
	if ev.Unsaved != "" {
		prog.message, prog.outcome = "unsaved edits", lens.OutcomeFailed
		return nil, lspError(jsonrpc2.InvalidRequest, "cannot build the unsaved edits of %s: %s", d.path, ev.Unsaved)
	}
	pkg := target.PickPackage(ev, a.Name)
	if pkg == nil || pkg.Plan == nil {
		msg := ev.Err
		if msg == "" {
			msg = "no evaluated derivation matches " + a.Name
		}
		prog.message, prog.outcome = "evaluation failed", lens.OutcomeFailed
		return nil, lspError(jsonrpc2.InvalidRequest, "cannot build %s: %s", d.path, msg)
	}
	if from != "" {
		if from = phaserules.Resolve(phaseNames(pkg), from); from == "" {
			return nil, lspError(jsonrpc2.InvalidParams, "%s has no phase %q (phases: %s)", pkg.Name, a.Phase, strings.Join(phaseNames(pkg), " "))
		}
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	d.running = d.running.With(pkg.DrvPath)
	delete(d.states, pkg.DrvPath)
	s.mu.Unlock()
	s.lensesChanged()
	var logBuf strings.Builder
	t0 := time.Now()
	res, err := eng.Build(ctx, api.BuildRequest{DrvPath: pkg.DrvPath, From: from}, api.Output{
		Log: &logWriter{b: &logBuf},
		Progress: func(e events.Event) {
			s.buildEvent(d, pkg.DrvPath, e)
			prog.event(e)
		},
	})
	out := lens.BuildResult{Drv: pkg.DrvPath, Seconds: time.Since(t0).Seconds()}
	var pe *runner.PhaseError
	switch {
	case err == nil:
		out.OK, out.Built = true, lens.BuiltOf(res)
		prog.message, prog.outcome = fmt.Sprintf("built %s: %d phases ran, %d cached", pkg.Name, len(res.Ran), len(res.Reused)), lens.OutcomeSucceeded
	case errors.As(err, &pe):
		out.FailedPhase, out.Exit, out.Error = pe.Phase, pe.Exit, err.Error()
		prog.message, prog.outcome = fmt.Sprintf("%s failed in %s", pkg.Name, pe.Phase), lens.OutcomeFailed
	case ctx.Err() != nil:
		prog.message, prog.outcome = "cancelled", lens.OutcomeCancelled
		s.replan(d)
		return nil, protocol.ErrRequestCancelled
	default:
		prog.message, prog.outcome = "build error", lens.OutcomeError
		s.replan(d)
		return nil, lspError(jsonrpc2.InternalError, "building %s: %v", pkg.Name, err)
	}
	// The new plans say what is cached now, the history which phase failed.
	s.replan(d)
	return out, nil
}

// buildEvent moves a document's running build on by one event. The
// lenses change when a phase starts or ends or the engine's state does;
// what the engine reports after the phases (learning, a provisional
// result, …) stays with the derivation after the build.
func (s *server) buildEvent(d *document, drvPath string, e events.Event) {
	now := time.Now()
	s.mu.Lock()
	if d.running != nil {
		d.running = d.running.Apply(e, now)
	}
	if st := target.StateOf(e, now); st != nil {
		// A result's state is in its record (Package.Result), background
		// work is followed while it runs (Package.Background).
		if e.State == "" && e.Kind != events.EventBackground {
			d.states[drvPath] = st
		}
	} else if e.Kind == events.EventStart || e.Kind == events.EventCached {
		delete(d.states, drvPath) // a state before a phase was about the build's way there
	}
	s.mu.Unlock()
	s.lensesChanged()
}

func phaseNames(pkg *target.Package) []string {
	var names []string
	for _, ph := range pkg.Plan.Phases {
		names = append(names, ph.Name)
	}
	return names
}

// replan asks the runner again after a build, so lenses show the new
// cache: for every derivation of the document, since the build (possibly
// of the unsaved buffer, a different .drv) may have filled layers they
// share. The plans carry the history, so a failure shows from there.
func (s *server) replan(d *document) {
	eng, err := s.getEngine()
	if err != nil {
		return
	}
	s.mu.Lock()
	ev := d.eval
	s.mu.Unlock()
	if ev == nil {
		return
	}
	plans := target.PlanAgain(s.ctx, eng, ev, s.log)
	s.mu.Lock()
	defer s.mu.Unlock()
	// A newer evaluation already has fresh plans (a copy of this one, made
	// when a result's state changed, has the same Done and gets them).
	if d.eval == nil || !d.eval.Done.Equal(ev.Done) {
		return
	}
	d.eval = plans.Apply(ev, d.states)
}

// logWriter collects the builder's output, bounded.
type logWriter struct{ b *strings.Builder }

func (w *logWriter) Write(p []byte) (int, error) {
	if w.b.Len() < 1<<20 {
		w.b.Write(p)
	}
	return len(p), nil
}

func (s *server) openShell(a lens.CommandArgs) (any, error) {
	d, pkg, err := s.pick(a)
	if err != nil {
		return nil, err
	}
	phase := a.Phase
	if phase == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s needs a phase", lens.CmdOpenShell)
	}
	if pkg.Plan != nil {
		var names []string
		for _, ph := range pkg.Plan.Phases {
			names = append(names, ph.Name)
		}
		if r := phaserules.Resolve(names, phase); r != "" {
			phase = r
		} else {
			return nil, lspError(jsonrpc2.InvalidParams, "%s has no phase %q", pkg.Name, a.Phase)
		}
	}
	self, err := os.Executable()
	if err != nil {
		self = "nixlayer"
	}
	t := s.targets.Find(s.ctx, s.workspace(), d.path).Target
	argv := []string{self, "shell", "--at", phase}
	if s.opts.CacheDir != "" {
		argv = append(argv, "--cache", s.opts.CacheDir)
	}
	argv = append(argv, t.Nix().Argv("-f")...)
	res := lens.ShellResult{Argv: argv, Command: shellQuote(argv), Cwd: dirOf(d.path)}
	s.mu.Lock()
	if disk, err := os.ReadFile(d.path); err != nil || string(disk) != string(d.text) {
		res.Note = "the shell evaluates the saved file; save the buffer first to include unsaved edits"
	}
	s.mu.Unlock()
	return res, nil
}

func (s *server) showLog(a lens.CommandArgs) (any, error) {
	_, pkg, err := s.pick(a)
	if err != nil {
		return nil, err
	}
	if pkg.Plan == nil {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s has no plan", pkg.Name)
	}
	var names []string
	for _, ph := range pkg.Plan.Phases {
		names = append(names, ph.Name)
	}
	phase := phaserules.Resolve(names, a.Phase)
	if phase == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s has no phase %q (phases: %s)", pkg.Name, a.Phase, strings.Join(names, " "))
	}
	layer := ""
	if f := pkg.Failure; f != nil && f.Phase == phase {
		layer = f.Layer
	}
	for _, ph := range pkg.Plan.Phases {
		if ph.Name == phase && layer == "" && ph.Layer != nil {
			layer = ph.Layer.ID
		}
	}
	if layer == "" {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s of %s has no layer yet: build it first", phase, pkg.Name)
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	logs, err := eng.Log(s.ctx, api.LogRequest{Phase: layer})
	if err != nil || len(logs) == 0 {
		return nil, lspError(jsonrpc2.InvalidRequest, "the log of %s (layer %s): %v", phase, lens.ShortID(layer), err)
	}
	return lens.LogResult{Phase: phase, Layer: layer, Log: logs[0].Log}, nil
}

func shellQuote(argv []string) string {
	var parts []string
	for _, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) < 0 {
			parts = append(parts, a)
			continue
		}
		parts = append(parts, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	return strings.Join(parts, " ")
}

// chooseTarget picks the document's target among those that match it:
// the one named in a.Target, else the one the user picks from a
// window/showMessageRequest. The document is evaluated again.
func (s *server) chooseTarget(ctx context.Context, a lens.CommandArgs) (any, error) {
	s.mu.Lock()
	d := s.docs[a.URI]
	var choices []target.Choice
	if d != nil && d.eval != nil {
		choices = d.eval.Choices
	}
	s.mu.Unlock()
	if d == nil {
		return nil, lspError(jsonrpc2.InvalidParams, "document %s is not open", a.URI)
	}
	if len(choices) < 2 {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s has one target only: there is nothing to choose", d.path)
	}
	name := a.Target
	if name == "" {
		var actions []protocol.MessageActionItem
		for _, c := range choices {
			actions = append(actions, protocol.MessageActionItem{Title: c.How})
		}
		var picked *protocol.MessageActionItem
		if _, err := s.conn.Call(ctx, protocol.MethodWindowShowMessageRequest, protocol.ShowMessageRequestParams{
			Type: protocol.MessageTypeInfo, Message: "nixlayer: which target builds " + d.path + "?", Actions: actions,
		}, &picked); err != nil {
			return nil, fmt.Errorf("asking which target to build: %w", err)
		}
		if picked == nil {
			return nil, nil // dismissed
		}
		for _, c := range choices {
			if c.How == picked.Title {
				name = c.Name
			}
		}
	}
	var chosen *target.Choice
	var names []string
	for i, c := range choices {
		names = append(names, c.Name)
		if c.Name == name {
			chosen = &choices[i]
		}
	}
	if chosen == nil {
		return nil, lspError(jsonrpc2.InvalidParams, "%s is not a target of %s (targets: %s)", name, d.path, strings.Join(names, ", "))
	}
	s.mu.Lock()
	s.chosen[d.path] = chosen.Name
	s.mu.Unlock()
	s.scheduleEval(a.URI)
	return chosen, nil
}

// browse finds the layer of a phase of the document's derivation, with
// the roots of its tree that exist (/build, and the outputs made so far).
func (s *server) browse(ctx context.Context, a lens.CommandArgs) (*lens.BrowseResult, error) {
	_, pkg, err := s.pick(a)
	if err != nil {
		return nil, err
	}
	if pkg.Plan == nil {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s has no plan", pkg.Name)
	}
	phase := phaserules.Resolve(phaseNames(pkg), a.Phase)
	if a.Phase == "" || phase == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s has no phase %q (phases: %s)", pkg.Name, a.Phase, phaseList(pkg))
	}
	res := lens.LayerOf(pkg, phase)
	if res == nil {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s of %s has no layer in the cache yet: build it first", phase, pkg.Name)
	}
	// Outputs appear in the phase that creates them (installPhase, mostly).
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	roots := res.Roots[:1]
	for _, r := range res.Roots[1:] {
		_, err := eng.LayerFiles(ctx, api.LayerFilesRequest{Layer: res.Layer, Path: r})
		switch {
		case err == nil:
			roots = append(roots, r)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, layerError(err)
		}
	}
	res.Roots = roots
	return res, nil
}

func phaseList(pkg *target.Package) string { return strings.Join(phaseNames(pkg), " ") }

func (s *server) diff(ctx context.Context, a lens.CommandArgs) (*lens.DiffResult, error) {
	b, err := s.browse(ctx, a)
	if err != nil {
		return nil, err
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	d, err := eng.LayerDiff(ctx, api.LayerDiffRequest{Layer: b.Layer})
	if err != nil {
		return nil, layerError(err)
	}
	return &lens.DiffResult{Diff: *d, Label: b.Label}, nil
}

// layerRequest answers the layer requests (thin: the engine does the work).
func (s *server) layerRequest(ctx context.Context, method string, raw json.RawMessage) (any, error) {
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	var p struct {
		api.ReadLayerFileRequest // a superset of the three requests' params
	}
	if err := decode(raw, &p); err != nil {
		return nil, err
	}
	if p.Layer == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s needs a layer (from nixlayer.browse)", method)
	}
	var res any
	switch method {
	case lens.MethodLayerFiles:
		res, err = eng.LayerFiles(ctx, api.LayerFilesRequest{Layer: p.Layer, Path: p.Path})
	case lens.MethodReadLayerFile:
		res, err = eng.ReadLayerFile(ctx, p.ReadLayerFileRequest)
	case lens.MethodLayerDiff:
		res, err = eng.LayerDiff(ctx, api.LayerDiffRequest{Layer: p.Layer})
	}
	if err != nil {
		return nil, layerError(err)
	}
	return res, nil
}

// layerError gives the two errors an explorer tells apart their codes.
func layerError(err error) error {
	var gone *layertree.GoneError
	switch {
	case errors.As(err, &gone):
		return jsonrpc2.NewError(lens.CodeLayerGone, err.Error())
	case errors.Is(err, fs.ErrNotExist):
		return jsonrpc2.NewError(lens.CodeFileNotFound, err.Error())
	}
	return err
}

package lsp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/phaserules"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/runner"
)

// executeParams is protocol.ExecuteCommandParams with the arguments and
// the progress token kept raw.
type executeParams struct {
	Command       string            `json:"command"`
	Arguments     []json.RawMessage `json:"arguments"`
	WorkDoneToken json.RawMessage   `json:"workDoneToken,omitempty"`
}

// BuildResult answers nixlayer.build and nixlayer.rebuildFrom.
type BuildResult struct {
	OK  bool   `json:"ok"`
	Drv string `json:"drv"`
	// Built is empty when the build failed.
	Built
	Seconds float64 `json:"seconds"`
	// FailedPhase and Error describe a build that failed in a phase.
	FailedPhase string `json:"failedPhase,omitempty"`
	Exit        int    `json:"exit,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Built is what a BuildResult tells of a successful build: the phases, the
// outputs and the state of its runner.Result.
type Built struct {
	Ran      []string          `json:"ran"`
	Reused   []string          `json:"reused"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	InStore  bool              `json:"inStore"`
	Verified bool              `json:"verified"`
	// State is the result's state (runner.ResultState): a provisional
	// result is verified or replaced in the background; the server sends
	// nixlayer/resultState and refreshes the lenses when it changes.
	State events.ResultState `json:"state,omitempty"`
}

func builtOf(res *runner.Result) Built {
	return Built{Ran: res.Ran, Reused: res.Reused, Outputs: res.Outputs, InStore: res.InStore, Verified: res.Verified, State: res.State}
}

// ShellResult answers nixlayer.openShell: the command for the client to
// run in a terminal.
type ShellResult struct {
	Command string   `json:"command"`
	Argv    []string `json:"argv"`
	Cwd     string   `json:"cwd"`
	Note    string   `json:"note,omitempty"`
}

// LogResult answers nixlayer.showLog.
type LogResult struct {
	Phase string `json:"phase"`
	Layer string `json:"layer"`
	Log   string `json:"log"`
}

func (s *server) executeCommand(ctx context.Context, p executeParams) (any, error) {
	if len(p.Arguments) != 1 {
		return nil, lspError(jsonrpc2.InvalidParams, "%s takes one argument {\"uri\": …, \"phase\": …}, got %d", p.Command, len(p.Arguments))
	}
	var a CommandArgs
	if err := json.Unmarshal(p.Arguments[0], &a); err != nil || a.URI == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s: the argument must be {\"uri\": …, \"phase\": …}", p.Command)
	}
	switch p.Command {
	case CmdBuild:
		return s.build(ctx, a, "", p.WorkDoneToken)
	case CmdRebuildFrom:
		if a.Phase == "" {
			return nil, lspError(jsonrpc2.InvalidParams, "%s needs a phase", p.Command)
		}
		return s.build(ctx, a, a.Phase, p.WorkDoneToken)
	case CmdOpenShell:
		return s.openShell(a)
	case CmdShowLog:
		return s.showLog(a)
	case CmdBrowse:
		return s.browse(ctx, a)
	case CmdDiff:
		return s.diff(ctx, a)
	case CmdCancel:
		return s.cancel(a)
	case CmdChooseTarget:
		return s.chooseTarget(ctx, a)
	}
	return nil, lspError(jsonrpc2.InvalidParams, "unknown command %q (known: %s)", p.Command, strings.Join(Commands, ", "))
}

// cancel stops the document's running build (its request then answers
// RequestCancelled); true when one was running.
func (s *server) cancel(a CommandArgs) (any, error) {
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
func (s *server) pick(a CommandArgs) (*document, *Package, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[a.URI]
	if d == nil {
		return nil, nil, lspError(jsonrpc2.InvalidParams, "document %s is not open", a.URI)
	}
	if d.eval == nil {
		return d, nil, lspError(jsonrpc2.InvalidRequest, "%s has not been evaluated yet", d.path)
	}
	p := pickPackage(d.eval, a.Name)
	if p == nil {
		msg := "no evaluated derivation"
		if d.eval.Err != "" {
			msg = d.eval.Err
		}
		return d, nil, lspError(jsonrpc2.InvalidRequest, "%s: %s", d.path, msg)
	}
	return d, p, nil
}

func pickPackage(ev *Evaluation, name string) *Package {
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

// build evaluates the buffer (unsaved edits included), builds the chosen
// derivation with the runner and reports $/progress; the lenses follow the
// build live (refreshed as phases end, and while one runs); a failed phase
// becomes a diagnostic, kept in the cache's history until the next build.
func (s *server) build(ctx context.Context, a CommandArgs, from string, token json.RawMessage) (any, error) {
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
	d.running, d.cancelBuild = NewRunning(time.Now()), cancel
	d.buildDiag = nil
	snap := snapshot{uri: d.uri, path: d.path, text: d.text}
	s.mu.Unlock()
	s.publishDiagnostics(d)
	s.lensesChanged()
	defer func() {
		s.mu.Lock()
		d.running, d.cancelBuild = nil, nil
		d.buildDiag = failureDiagnostics(d)
		s.mu.Unlock()
		s.publishDiagnostics(d)
		s.lensesChanged()
	}()

	prog := s.beginProgress(ctx, token, "nixlayer: build "+d.path, cancel)
	defer prog.end()

	ev := s.evaluate(ctx, snap)
	if ctx.Err() != nil {
		prog.message, prog.outcome = "cancelled", OutcomeCancelled
		return nil, protocol.ErrRequestCancelled
	}
	s.mu.Lock()
	s.setEval(d, ev, snap)
	s.mu.Unlock()
	if ev.Unsaved != "" {
		prog.message, prog.outcome = "unsaved edits", OutcomeFailed
		return nil, lspError(jsonrpc2.InvalidRequest, "cannot build the unsaved edits of %s: %s", d.path, ev.Unsaved)
	}
	pkg := pickPackage(ev, a.Name)
	if pkg == nil || pkg.Plan == nil {
		msg := ev.Err
		if msg == "" {
			msg = "no evaluated derivation matches " + a.Name
		}
		prog.message, prog.outcome = "evaluation failed", OutcomeFailed
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
	d.running = d.running.with(pkg.DrvPath)
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
	out := BuildResult{Drv: pkg.DrvPath, Seconds: time.Since(t0).Seconds()}
	var pe *runner.PhaseError
	switch {
	case err == nil:
		out.OK, out.Built = true, builtOf(res)
		prog.message, prog.outcome = fmt.Sprintf("built %s: %d phases ran, %d cached", pkg.Name, len(res.Ran), len(res.Reused)), OutcomeSucceeded
	case errors.As(err, &pe):
		out.FailedPhase, out.Exit, out.Error = pe.Phase, pe.Exit, err.Error()
		prog.message, prog.outcome = fmt.Sprintf("%s failed in %s", pkg.Name, pe.Phase), OutcomeFailed
	case ctx.Err() != nil:
		prog.message, prog.outcome = "cancelled", OutcomeCancelled
		s.replan(d)
		return nil, protocol.ErrRequestCancelled
	default:
		prog.message, prog.outcome = "build error", OutcomeError
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
	if st := stateOf(e, now); st != nil {
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

func phaseNames(pkg *Package) []string {
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
	plans := map[string]*api.PlanResult{}
	var drvs []string
	for _, p := range ev.Packages {
		drvs = append(drvs, p.DrvPath)
		pr, err := eng.Plan(s.ctx, api.PlanRequest{DrvPath: p.DrvPath}, api.Output{})
		if err != nil {
			s.log.Warn("planning after a build", zap.String("drv", p.DrvPath), zap.Error(err))
			continue
		}
		plans[p.DrvPath] = pr
	}
	// The build may have left work to the background (learning).
	var jobs []results.Job
	if rr, err := eng.Results(s.ctx, api.ResultsRequest{Drvs: drvs}); err == nil {
		jobs = rr.Background
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A newer evaluation already has fresh plans (a copy of this one, made
	// when a result's state changed, has the same Done and gets them).
	if d.eval == nil || !d.eval.Done.Equal(ev.Done) {
		return
	}
	d.eval = ev.withPackages(func(cp *Package) {
		if pr := plans[cp.DrvPath]; pr != nil {
			cp.Plan, cp.Result = pr.Plan, pr.Result
			if h := pr.History; h != nil {
				cp.History, cp.Failure = h.Runs, failureOf(h.Failure)
			} else {
				cp.History, cp.Failure = nil, nil
			}
		}
		cp.State = d.states[cp.DrvPath]
		cp.Background = backgroundOf(cp, jobs)
	})
}

// withPackages is a copy of the evaluation with each package copied and
// updated: evaluations are immutable for readers, so changes install one.
func (ev *Evaluation) withPackages(update func(cp *Package)) *Evaluation {
	next := *ev
	next.Packages = nil
	for _, p := range ev.Packages {
		cp := *p
		update(&cp)
		next.Packages = append(next.Packages, &cp)
	}
	return &next
}

// failureDiagnostics put each failed phase of the document's derivations
// on its attribute; s.mu is held.
func failureDiagnostics(d *document) []protocol.Diagnostic {
	var out []protocol.Diagnostic
	for _, v := range Analyze(d.file, d.eval) {
		if v.Pkg == nil || v.Pkg.Failure == nil {
			continue
		}
		pe := v.Pkg.Failure
		span := FailureTarget(v, pe.Phase)
		start, end := position(d.file, span.Start), position(d.file, span.End)
		out = append(out, protocol.Diagnostic{
			Range:    protocol.Range{Start: start, End: end},
			Severity: protocol.DiagnosticSeverityError,
			Source:   "nixlayer",
			Message:  fmt.Sprintf("%s failed in %s with exit code %d; last log lines:\n%s", v.Pkg.Name, pe.Phase, pe.Exit, logtail.Lines(pe.LogTail, 15)),
		})
	}
	return out
}

// logWriter collects the builder's output, bounded.
type logWriter struct{ b *strings.Builder }

func (w *logWriter) Write(p []byte) (int, error) {
	if w.b.Len() < 1<<20 {
		w.b.Write(p)
	}
	return len(p), nil
}

func (s *server) openShell(a CommandArgs) (any, error) {
	d, pkg, err := s.pick(a)
	if err != nil {
		return nil, err
	}
	phase := a.Phase
	if phase == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s needs a phase", CmdOpenShell)
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
	t := s.findTarget(s.ctx, d.path).Target
	argv := []string{self, "shell", "--at", phase}
	if s.opts.CacheDir != "" {
		argv = append(argv, "--cache", s.opts.CacheDir)
	}
	argv = append(argv, t.nix().Argv("-f")...)
	res := ShellResult{Argv: argv, Command: shellQuote(argv), Cwd: dirOf(d.path)}
	s.mu.Lock()
	if disk, err := os.ReadFile(d.path); err != nil || string(disk) != string(d.text) {
		res.Note = "the shell evaluates the saved file; save the buffer first to include unsaved edits"
	}
	s.mu.Unlock()
	return res, nil
}

func (s *server) showLog(a CommandArgs) (any, error) {
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
		return nil, lspError(jsonrpc2.InvalidRequest, "the log of %s (layer %s): %v", phase, short(layer), err)
	}
	return LogResult{Phase: phase, Layer: layer, Log: logs[0].Log}, nil
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

// Package lsp is nixlayer's language server: for the package a .nix file
// builds it shows, above every phase attribute, what the layer cache holds
// and what the current (even unsaved) edit invalidates, and it builds,
// rebuilds from a phase, opens shells and shows logs on request.
//
// The handlers here are thin: they decode, look up the document and call
// the pure functions of lsp/lens (lenses, hovers, diagnostics, over
// lsp/analysis), the evaluation of lsp/target (evaluate.go schedules it
// and follows the results' states) or the commands (commands.go), which
// use the engine (api.Service).
package lsp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/lsp/lens"
	"github.com/nixlayer/nixlayer/lsp/rpcstream"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

// Options configure a server.
type Options struct {
	// CacheDir is the layer cache (default runner.DefaultCacheDir()), used
	// when Connect is nil.
	CacheDir string
	// Connect reaches the engine on first use: nixlayer daemon for users,
	// the engine in this process for root (default: api.OpenLocal with
	// CacheDir). A failed connection is tried again on the next request.
	Connect func() (api.Service, error)
	// Debounce delays evaluation after open and save (default 200 ms).
	Debounce time.Duration
	// LensRefresh is how often lenses are refreshed while a build runs (the
	// running phase's time), and the least time between two refreshes
	// (default 1 s; negative: only when a phase starts or ends).
	LensRefresh time.Duration
	Logger      *zap.Logger
}

// Serve speaks LSP on rwc until the client sends exit or closes the stream.
// It returns nil after a clean shutdown + exit.
func Serve(ctx context.Context, rwc io.ReadWriteCloser, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.LensRefresh == 0 {
		opts.LensRefresh = time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := rpcstream.New(rwc)
	st.OnDrop = func(data []byte, err error) {
		opts.Logger.Warn("dropped a malformed message", zap.Error(err), zap.Int("bytes", len(data)))
	}
	conn := jsonrpc2.NewConn(st)
	s := &server{
		opts: opts, log: opts.Logger, conn: conn, ctx: ctx,
		docs:      map[protocol.DocumentURI]*document{},
		inflight:  map[string]context.CancelFunc{},
		tokens:    map[string]context.CancelFunc{},
		refreshCh: make(chan struct{}, 1),
		chosen:    map[string]string{},
		targets:   target.NewFinder(opts.Logger),
	}
	conn.Go(ctx, s.handle)
	go s.refreshLoop(ctx)
	go s.watchResults(ctx, time.Second)
	select {
	case <-conn.Done():
	case <-ctx.Done():
		conn.Close()
	}
	cancel()
	s.closeEngine()
	s.mu.Lock()
	clean := s.shutdown
	s.mu.Unlock()
	if err := conn.Err(); err != nil && !clean && !errors.Is(err, io.EOF) {
		return fmt.Errorf("language server connection: %w", err)
	}
	if !clean {
		return errors.New("the client ended the session without shutdown")
	}
	return nil
}

type server struct {
	opts Options
	log  *zap.Logger
	conn jsonrpc2.Conn
	ctx  context.Context

	mu          sync.Mutex
	initialized bool
	shutdown    bool
	folders     []string // workspace folders: the only places files are evaluated
	settings    target.Settings
	caps        clientCaps
	docs        map[protocol.DocumentURI]*document
	inflight    map[string]context.CancelFunc // request id → cancel
	tokens      map[string]context.CancelFunc // progress token → cancel build
	tokenSeq    int
	refreshCh   chan struct{}     // lensesChanged → refreshLoop
	chosen      map[string]string // file → the target picked among several (nixlayer.chooseTarget)
	targets     *target.Finder

	engineMu sync.Mutex
	engine   api.Service
}

// clientCaps are the client capabilities the server uses.
type clientCaps struct {
	Window struct {
		WorkDoneProgress bool `json:"workDoneProgress"`
	} `json:"window"`
	Workspace struct {
		CodeLens struct {
			RefreshSupport bool `json:"refreshSupport"`
		} `json:"codeLens"`
	} `json:"workspace"`
}

// document is an open buffer.
type document struct {
	uri     protocol.DocumentURI
	path    string
	version int32
	text    []byte
	file    *syntax.File

	eval       *target.Evaluation
	pending    string // shown while no evaluation is known
	evalGen    int
	evalTimer  *time.Timer
	evalCancel context.CancelFunc

	running     *lens.Running
	cancelBuild context.CancelFunc             // of the running build
	states      map[string]*target.EngineState // drv path → the engine's state after its last build
	evalDiags   []protocol.Diagnostic
	buildDiag   []protocol.Diagnostic
}

// lspError builds a response error with an LSP code.
func lspError(code jsonrpc2.Code, format string, args ...any) error {
	return jsonrpc2.NewError(code, fmt.Sprintf(format, args...))
}

func idKey(id jsonrpc2.ID) string { return fmt.Sprintf("%q", id) }

// handle runs in the connection's read loop. Notifications that change
// state are applied here, in order, and quickly (evaluations and builds run
// in the background), so a request sees every edit sent before it.
// Requests run in their own goroutines: a build never blocks the stream,
// and the server can call the client (progress, refresh) without deadlock.
func (s *server) handle(ctx context.Context, reply jsonrpc2.Replier, req jsonrpc2.Request) error {
	call, isCall := req.(*jsonrpc2.Call)
	if !isCall {
		s.safely(req.Method(), func() { s.notification(req.Method(), req.Params()) })
		return nil
	}
	s.mu.Lock()
	initialized, shutdown := s.initialized, s.shutdown
	rctx, cancel := context.WithCancel(s.ctx)
	key := idKey(call.ID())
	s.inflight[key] = cancel
	s.mu.Unlock()
	done := func(result any, err error) {
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
		if err == nil && rctx.Err() != nil && s.ctx.Err() == nil {
			err = protocol.ErrRequestCancelled
		}
		cancel()
		if rerr := reply(context.Background(), result, err); rerr != nil {
			s.log.Warn("reply failed", zap.String("method", req.Method()), zap.Error(rerr))
		}
	}
	switch {
	case req.Method() == protocol.MethodInitialize && initialized:
		done(nil, lspError(jsonrpc2.InvalidRequest, "initialize was already called"))
		return nil
	case req.Method() != protocol.MethodInitialize && !initialized:
		done(nil, lspError(jsonrpc2.ServerNotInitialized, "%s before initialize", req.Method()))
		return nil
	case shutdown:
		done(nil, lspError(jsonrpc2.InvalidRequest, "%s after shutdown", req.Method()))
		return nil
	}
	go func() {
		var (
			result any
			err    error
		)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panicked", zap.String("method", req.Method()), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
				result, err = nil, lspError(jsonrpc2.InternalError, "internal error in %s: %v", req.Method(), r)
			}
			done(result, err)
		}()
		result, err = s.request(rctx, req.Method(), req.Params())
	}()
	return nil
}

func (s *server) safely(method string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("notification handler panicked", zap.String("method", method), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
	}()
	f()
}

// decode unmarshals params, turning a type mismatch into InvalidParams.
func decode(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return lspError(jsonrpc2.InvalidParams, "missing params")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return lspError(jsonrpc2.InvalidParams, "invalid params: %v", err)
	}
	return nil
}

func (s *server) request(ctx context.Context, method string, raw json.RawMessage) (any, error) {
	switch method {
	case protocol.MethodInitialize:
		return s.initialize(raw)
	case protocol.MethodShutdown:
		s.mu.Lock()
		s.shutdown = true // running builds end with the connection (exit)
		s.mu.Unlock()
		return nil, nil
	case protocol.MethodTextDocumentCodeLens:
		return aboutDocument(s, raw, func(_ protocol.CodeLensParams, in lens.LensInput) any {
			return lens.CodeLenses(in)
		})
	case protocol.MethodTextDocumentHover:
		return aboutDocument(s, raw, func(p protocol.HoverParams, in lens.LensInput) any {
			off := in.File.Lines.Offset(int(p.Position.Line), int(p.Position.Character))
			if h := lens.Hover(in, off, time.Now()); h != nil {
				return h
			}
			return nil
		})
	case lens.MethodPhases:
		return aboutDocument(s, raw, func(p protocol.TextDocumentPositionParams, in lens.LensInput) any {
			return lens.PhasesAt(in, int(p.Position.Line))
		})
	case lens.MethodTargets:
		return aboutDocument(s, raw, func(_ protocol.TextDocumentPositionParams, in lens.LensInput) any {
			return lens.TargetsOf(in.Eval)
		})
	case lens.MethodLayerFiles, lens.MethodReadLayerFile, lens.MethodLayerDiff:
		return s.layerRequest(ctx, method, raw)
	case protocol.MethodWorkspaceExecuteCommand:
		var p executeParams
		if err := decode(raw, &p); err != nil {
			return nil, err
		}
		return s.executeCommand(ctx, p)
	}
	return nil, lspError(jsonrpc2.MethodNotFound, "method %q is not supported by nixlayer", method)
}

// aboutDocument answers a request about one document: it decodes the
// params as P (with the document as textDocument, as LSP's requests name
// it) and answers with them and the document's lens input.
func aboutDocument[P any](s *server, raw json.RawMessage, answer func(P, lens.LensInput) any) (any, error) {
	var p P
	if err := decode(raw, &p); err != nil {
		return nil, err
	}
	var doc struct {
		TextDocument protocol.TextDocumentIdentifier `json:"textDocument"`
	}
	if err := decode(raw, &doc); err != nil {
		return nil, err
	}
	in, err := s.lensInput(doc.TextDocument.URI)
	if err != nil {
		return nil, err
	}
	return answer(p, in), nil
}

func (s *server) notification(method string, raw json.RawMessage) {
	switch method {
	case protocol.MethodInitialized, "$/setTrace", "$/logTrace":
	case protocol.MethodExit:
		s.conn.Close()
	case protocol.MethodCancelRequest:
		var p struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(raw, &p) != nil || len(p.ID) == 0 {
			s.log.Warn("malformed $/cancelRequest", zap.ByteString("params", raw))
			return
		}
		key := "#" + string(p.ID)
		if str := ""; json.Unmarshal(p.ID, &str) == nil {
			key = strconv.Quote(str)
		}
		s.mu.Lock()
		if c := s.inflight[key]; c != nil {
			c()
		}
		s.mu.Unlock()
	case protocol.MethodWorkDoneProgressCancel:
		var p struct {
			Token json.RawMessage `json:"token"`
		}
		if json.Unmarshal(raw, &p) == nil {
			s.mu.Lock()
			if c := s.tokens[string(p.Token)]; c != nil {
				c()
			}
			s.mu.Unlock()
		}
	case protocol.MethodTextDocumentDidOpen:
		var p protocol.DidOpenTextDocumentParams
		if s.decodeNote(method, raw, &p) {
			s.didOpen(p)
		}
	case protocol.MethodTextDocumentDidChange:
		var p didChangeParams
		if s.decodeNote(method, raw, &p) {
			s.didChange(p)
		}
	case protocol.MethodTextDocumentDidSave:
		var p protocol.DidSaveTextDocumentParams
		if s.decodeNote(method, raw, &p) {
			s.didSave(p)
		}
	case protocol.MethodTextDocumentDidClose:
		var p protocol.DidCloseTextDocumentParams
		if s.decodeNote(method, raw, &p) {
			s.didClose(p.TextDocument.URI)
		}
	case protocol.MethodWorkspaceDidChangeConfiguration:
		var p struct {
			Settings json.RawMessage `json:"settings"`
		}
		if s.decodeNote(method, raw, &p) {
			s.mu.Lock()
			s.settings = target.ParseSettings(p.Settings, s.settings)
			s.mu.Unlock()
			s.reevaluateAll()
		}
	case protocol.MethodWorkspaceDidChangeWorkspaceFolders:
		var p protocol.DidChangeWorkspaceFoldersParams
		if s.decodeNote(method, raw, &p) {
			s.mu.Lock()
			for _, f := range p.Event.Removed {
				if path, err := uriPath(protocol.DocumentURI(f.URI)); err == nil {
					s.folders = remove(s.folders, path)
				}
			}
			for _, f := range p.Event.Added {
				if path, err := uriPath(protocol.DocumentURI(f.URI)); err == nil {
					s.folders = append(s.folders, path)
				}
			}
			s.mu.Unlock()
			s.reevaluateAll()
		}
	default:
		s.log.Debug("ignored notification", zap.String("method", method))
	}
}

func (s *server) decodeNote(method string, raw json.RawMessage, v any) bool {
	if err := decode(raw, v); err != nil {
		s.log.Warn("malformed notification ignored", zap.String("method", method), zap.Error(err))
		return false
	}
	return true
}

func remove(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func (s *server) initialize(raw json.RawMessage) (any, error) {
	var p protocol.InitializeParams
	if err := decode(raw, &p); err != nil {
		return nil, err
	}
	var caps struct {
		Capabilities clientCaps `json:"capabilities"`
	}
	_ = json.Unmarshal(raw, &caps)
	var folders []string
	for _, f := range p.WorkspaceFolders {
		if path, err := uriPath(protocol.DocumentURI(f.URI)); err == nil {
			folders = append(folders, path)
		}
	}
	if len(folders) == 0 && p.RootURI != "" {
		if path, err := uriPath(p.RootURI); err == nil {
			folders = append(folders, path)
		}
	}
	if len(folders) == 0 && p.RootPath != "" && filepath.IsAbs(p.RootPath) {
		folders = append(folders, filepath.Clean(p.RootPath))
	}
	var initOpts json.RawMessage
	if p.InitializationOptions != nil {
		initOpts, _ = json.Marshal(p.InitializationOptions)
	}
	s.mu.Lock()
	s.initialized = true
	s.folders = folders
	s.caps = caps.Capabilities
	s.settings = target.ParseSettings(initOpts, target.Settings{})
	s.mu.Unlock()
	s.log.Info("initialized", zap.Strings("folders", folders))
	return map[string]any{
		"capabilities": map[string]any{
			"textDocumentSync": map[string]any{
				"openClose": true,
				"change":    protocol.TextDocumentSyncKindIncremental,
				"save":      map[string]any{"includeText": false},
			},
			"codeLensProvider":       map[string]any{"resolveProvider": false},
			"hoverProvider":          true,
			"executeCommandProvider": map[string]any{"commands": lens.Commands},
			"workspace": map[string]any{
				"workspaceFolders": map[string]any{"supported": true, "changeNotifications": true},
			},
		},
		"serverInfo": map[string]any{"name": "nixlayer"},
	}, nil
}

// didChangeParams is protocol.DidChangeTextDocumentParams with an optional
// range (protocol v0.12.0 cannot tell a full-text change from an insertion
// at 0:0).
type didChangeParams struct {
	TextDocument   protocol.VersionedTextDocumentIdentifier `json:"textDocument"`
	ContentChanges []struct {
		Range *protocol.Range `json:"range"`
		Text  string          `json:"text"`
	} `json:"contentChanges"`
}

func (s *server) didOpen(p protocol.DidOpenTextDocumentParams) {
	path, err := uriPath(p.TextDocument.URI)
	if err != nil {
		s.log.Warn("didOpen of a non-file document", zap.String("uri", string(p.TextDocument.URI)))
		return
	}
	text := []byte(p.TextDocument.Text)
	d := &document{uri: p.TextDocument.URI, path: path, version: p.TextDocument.Version, text: text, file: parser.Parse(text), states: map[string]*target.EngineState{}}
	s.mu.Lock()
	if old := s.docs[d.uri]; old != nil {
		s.stopEval(old)
	}
	s.docs[d.uri] = d
	s.mu.Unlock()
	s.scheduleEval(d.uri)
}

func (s *server) didChange(p didChangeParams) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[p.TextDocument.URI]
	if d == nil {
		s.log.Warn("didChange of a document that is not open", zap.String("uri", string(p.TextDocument.URI)))
		return
	}
	text := d.text
	for _, c := range p.ContentChanges {
		if c.Range == nil {
			text = []byte(c.Text)
			continue
		}
		idx := syntax.NewLineIndex(text)
		start := idx.Offset(int(c.Range.Start.Line), int(c.Range.Start.Character))
		end := idx.Offset(int(c.Range.End.Line), int(c.Range.End.Character))
		if end < start {
			start, end = end, start
		}
		next := make([]byte, 0, len(text)-(end-start)+len(c.Text))
		next = append(append(append(next, text[:start]...), c.Text...), text[end:]...)
		text = next
	}
	d.text, d.version, d.file = text, p.TextDocument.Version, parser.Parse(text)
}

func (s *server) didSave(p protocol.DidSaveTextDocumentParams) {
	s.scheduleEval(p.TextDocument.URI)
}

func (s *server) didClose(uri protocol.DocumentURI) {
	s.mu.Lock()
	d := s.docs[uri]
	if d != nil {
		s.stopEval(d)
		delete(s.docs, uri)
	}
	s.mu.Unlock()
	if d != nil {
		s.notify(protocol.MethodTextDocumentPublishDiagnostics, protocol.PublishDiagnosticsParams{URI: uri, Diagnostics: []protocol.Diagnostic{}})
	}
}

func (s *server) reevaluateAll() {
	s.mu.Lock()
	var uris []protocol.DocumentURI
	for u := range s.docs {
		uris = append(uris, u)
	}
	s.mu.Unlock()
	for _, u := range uris {
		s.scheduleEval(u)
	}
}

// lensInput snapshots what the lens and hover functions need.
func (s *server) lensInput(uri protocol.DocumentURI) (lens.LensInput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[uri]
	if d == nil {
		return lens.LensInput{}, lspError(jsonrpc2.InvalidParams, "document %s is not open", uri)
	}
	return lens.LensInput{URI: uri, File: d.file, Eval: d.eval, Pending: d.pending, Running: d.running}, nil
}

func (s *server) notify(method string, params any) {
	if err := s.conn.Notify(s.ctx, method, params); err != nil {
		s.log.Debug("notify failed", zap.String("method", method), zap.Error(err))
	}
}

// callClient sends a request to the client and waits (bounded) for the answer.
func (s *server) callClient(ctx context.Context, method string, params any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := s.conn.Call(ctx, method, params, nil)
	return err
}

// lensesChanged asks for a lens refresh soon; refreshLoop sends it.
func (s *server) lensesChanged() {
	select {
	case s.refreshCh <- struct{}{}:
	default: // one is pending already
	}
}

// refreshLoop asks the client to request lenses again, when it can: at
// once after a change, then at most once per LensRefresh (a build's phases
// may end in quick succession), and while a build runs as often as its
// running time's lens changes (every LensRefresh, every five past a
// minute: lens.LiveInterval).
func (s *server) refreshLoop(ctx context.Context) {
	every := s.opts.LensRefresh
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.refreshCh:
		case now := <-tick:
			runs := s.runningBuilds()
			if len(runs) == 0 || now.Sub(last) < lens.LiveInterval(runs, now, every)-every/2 {
				continue
			}
		}
		last = time.Now()
		s.mu.Lock()
		ok := s.caps.Workspace.CodeLens.RefreshSupport
		s.mu.Unlock()
		if ok {
			if err := s.callClient(ctx, "workspace/codeLens/refresh", nil); err != nil {
				s.log.Debug("codeLens refresh failed", zap.Error(err))
			}
		}
		if every > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}
}

// runningBuilds are the builds running in the documents.
func (s *server) runningBuilds() []*lens.Running {
	s.mu.Lock()
	defer s.mu.Unlock()
	var runs []*lens.Running
	for _, d := range s.docs {
		if d.running != nil {
			runs = append(runs, d.running)
		}
	}
	return runs
}

func (s *server) publishDiagnostics(d *document) {
	s.mu.Lock()
	diags := append(append([]protocol.Diagnostic{}, d.evalDiags...), d.buildDiag...)
	uri, version := d.uri, d.version
	open := s.docs[uri] == d
	s.mu.Unlock()
	if !open {
		return
	}
	s.notify(protocol.MethodTextDocumentPublishDiagnostics, protocol.PublishDiagnosticsParams{URI: uri, Version: uint32(max(version, 0)), Diagnostics: diags})
}

// uriPath turns a file: URI into a clean absolute path.
func uriPath(u protocol.DocumentURI) (string, error) {
	pu, err := url.Parse(string(u))
	if err != nil {
		return "", fmt.Errorf("invalid URI %q: %w", u, err)
	}
	if pu.Scheme != "file" || pu.Path == "" {
		return "", fmt.Errorf("%q is not a file: URI", u)
	}
	return filepath.Clean(pu.Path), nil
}

// workspace is what the client told of the workspace, for finding and
// evaluating a buffer's target.
func (s *server) workspace() target.Workspace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return target.Workspace{Folders: slices.Clone(s.folders), Settings: s.settings, Chosen: maps.Clone(s.chosen)}
}

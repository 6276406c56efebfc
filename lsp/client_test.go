package lsp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.podman.io/storage/pkg/reexec"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/lsp/lens"
	"github.com/nixlayer/nixlayer/results"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// serverBinary builds the real nixlayer binary once per test run.
func serverBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "nixlayer-lsp-bin-")
		if binErr == nil {
			binPath, binErr = e2etest.BuildBinary(binDir)
		}
	})
	if binErr != nil {
		t.Fatalf("building nixlayer: %v", binErr)
	}
	return binPath
}

// client drives the real server binary over stdio with a JSON-RPC client.
type client struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	conn   jsonrpc2.Conn
	stderr *bytes.Buffer

	mu           sync.Mutex
	progress     []map[string]any
	refreshes    int
	refreshTimes []time.Time
	// pick answers window/showMessageRequest: the action whose title holds
	// it (none when ""); asked records the messages.
	pick      string
	asked     []string
	creates   int
	diags     map[protocol.DocumentURI][]protocol.Diagnostic
	refreshCh chan struct{}
	states    []events.Event // nixlayer/resultState notifications
}

type pipeRWC struct {
	io.Reader
	io.WriteCloser
}

func startClient(t *testing.T, cache string, extraArgs ...string) *client {
	t.Helper()
	cmd := exec.Command(serverBinary(t), append([]string{"lsp", "--debounce", "50ms", "-v"}, extraArgs...)...)
	cmd.Env = append(os.Environ(), "NIXLAYER_CACHE="+cache)
	return startClientCmd(t, cmd)
}

// startClientCmd drives a language server started by cmd.
func startClientCmd(t *testing.T, cmd *exec.Cmd) *client {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, cmd: cmd, stdin: stdin, stderr: &bytes.Buffer{}, diags: map[protocol.DocumentURI][]protocol.Diagnostic{}, refreshCh: make(chan struct{}, 100)}
	cmd.Stderr = zapcore.Lock(zapcore.AddSync(c.stderr))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.conn = jsonrpc2.NewConn(jsonrpc2.NewStream(pipeRWC{stdout, stdin}))
	c.conn.Go(context.Background(), c.handle)
	t.Cleanup(func() {
		c.conn.Close()
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", logtail.Lines(c.stderr.String(), 60))
		}
	})
	return c
}

// handle answers the server's requests and records its notifications.
func (c *client) handle(ctx context.Context, reply jsonrpc2.Replier, req jsonrpc2.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch req.Method() {
	case "window/workDoneProgress/create":
		c.creates++
		return reply(ctx, nil, nil)
	case protocol.MethodWindowShowMessageRequest:
		// The user picks the action whose title holds c.pick.
		var p protocol.ShowMessageRequestParams
		json.Unmarshal(req.Params(), &p)
		c.asked = append(c.asked, p.Message)
		for _, a := range p.Actions {
			if c.pick != "" && strings.Contains(a.Title, c.pick) {
				return reply(ctx, a, nil)
			}
		}
		return reply(ctx, nil, nil)
	case "workspace/codeLens/refresh":
		c.refreshes++
		c.refreshTimes = append(c.refreshTimes, time.Now())
		select {
		case c.refreshCh <- struct{}{}:
		default: // a build's ticks: the waiter needs only one
		}
		return reply(ctx, nil, nil)
	case "$/progress":
		var p struct {
			Token any            `json:"token"`
			Value map[string]any `json:"value"`
		}
		json.Unmarshal(req.Params(), &p)
		if p.Value != nil {
			p.Value["_token"] = p.Token
			c.progress = append(c.progress, p.Value)
		}
		return nil
	case lens.ResultStateMethod:
		var ev events.Event
		json.Unmarshal(req.Params(), &ev)
		c.states = append(c.states, ev)
		return nil
	case "textDocument/publishDiagnostics":
		var p protocol.PublishDiagnosticsParams
		json.Unmarshal(req.Params(), &p)
		c.diags[p.URI] = p.Diagnostics
		return nil
	}
	if _, ok := req.(*jsonrpc2.Call); ok {
		return reply(ctx, nil, jsonrpc2.ErrMethodNotFound)
	}
	return nil
}

func (c *client) call(method string, params, result any) error {
	c.t.Helper()
	timeout := 30 * time.Second
	if method == "workspace/executeCommand" {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := c.conn.Call(ctx, method, params, result)
	return err
}

func (c *client) mustCall(method string, params, result any) {
	c.t.Helper()
	if err := c.call(method, params, result); err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
}

func (c *client) notify(method string, params any) {
	c.t.Helper()
	if err := c.conn.Notify(context.Background(), method, params); err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
}

func (c *client) initialize(root string) { c.initializeWith(root, nil) }

// initializeWith initializes with initializationOptions (settings).
func (c *client) initializeWith(root string, settings map[string]any) {
	c.t.Helper()
	var res map[string]any
	params := map[string]any{
		"processId": os.Getpid(),
		"rootUri":   pathURI(root),
		"capabilities": map[string]any{
			"window":    map[string]any{"workDoneProgress": true},
			"workspace": map[string]any{"codeLens": map[string]any{"refreshSupport": true}},
		},
		"workspaceFolders": []map[string]any{{"uri": pathURI(root), "name": "ws"}},
	}
	if settings != nil {
		params["initializationOptions"] = settings
	}
	c.mustCall("initialize", params, &res)
	c.notify("initialized", map[string]any{})
}

func (c *client) open(path, text string) protocol.DocumentURI {
	uri := pathURI(path)
	c.notify("textDocument/didOpen", map[string]any{"textDocument": map[string]any{"uri": uri, "languageId": "nix", "version": 1, "text": text}})
	return uri
}

func (c *client) change(uri protocol.DocumentURI, version int, text string) {
	c.notify("textDocument/didChange", map[string]any{
		"textDocument":   map[string]any{"uri": uri, "version": version},
		"contentChanges": []map[string]any{{"text": text}},
	})
}

func (c *client) lenses(uri protocol.DocumentURI) []protocol.CodeLens {
	c.t.Helper()
	var ls []protocol.CodeLens
	c.mustCall("textDocument/codeLens", map[string]any{"textDocument": map[string]any{"uri": uri}}, &ls)
	return ls
}

// waitRefresh waits for a workspace/codeLens/refresh request.
func (c *client) waitRefresh(timeout time.Duration) {
	c.t.Helper()
	select {
	case <-c.refreshCh:
	case <-time.After(timeout):
		c.t.Fatalf("no workspace/codeLens/refresh within %s", timeout)
	}
}

// waitState waits (bounded) for a nixlayer/resultState notification of
// the given state for the derivation drv.
func (c *client) waitState(drv string, state events.ResultState, timeout time.Duration) events.Event {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		for _, ev := range c.states {
			if ev.State == state && ev.Drv == drv {
				c.mu.Unlock()
				return ev
			}
		}
		seen := append([]events.Event(nil), c.states...)
		c.mu.Unlock()
		if time.Now().After(deadline) {
			c.t.Fatalf("no %s result within %s (states seen: %+v)", state, timeout, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitBackground waits (bounded) until no background work runs on cache:
// none may outlive its test.
func waitBackground(t *testing.T, cache string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); len(results.Background(cache)) > 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("background work still running after %s", timeout)
		}
	}
}

// diagnostics are the diagnostics last published for uri.
func (c *client) diagnostics(uri protocol.DocumentURI) []protocol.Diagnostic {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.diags[uri]
}

func (c *client) drainRefresh() {
	for {
		select {
		case <-c.refreshCh:
		default:
			return
		}
	}
}

func (c *client) shutdown() {
	c.t.Helper()
	c.mustCall("shutdown", nil, nil)
	c.notify("exit", nil)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("server exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		c.t.Errorf("server did not exit after shutdown + exit")
	}
}

// lensLine is a lens as "LINE: TITLE [command]" for failure messages.
func lensLines(ls []protocol.CodeLens) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "  %d: %s [%s]\n", l.Range.Start.Line, l.Command.Title, l.Command.Command)
	}
	return b.String()
}

// statusByLine maps each buffer line to its status lens title (the first
// lens of the line that is not a "rebuild from" lens).
func statusByLine(ls []protocol.CodeLens) map[uint32]string {
	m := map[uint32]string{}
	for _, l := range ls {
		if strings.HasPrefix(l.Command.Title, "▶ rebuild") {
			continue
		}
		if _, ok := m[l.Range.Start.Line]; !ok {
			m[l.Range.Start.Line] = l.Command.Title
		}
	}
	return m
}

// lineOf is the 0-based line of the first occurrence of s in text.
func lineOf(t *testing.T, text, s string) uint32 {
	t.Helper()
	i := strings.Index(text, s)
	if i < 0 {
		t.Fatalf("%q not in text", s)
	}
	return uint32(strings.Count(text[:i], "\n"))
}

func errCode(err error) jsonrpc2.Code {
	var e *jsonrpc2.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// packageFile is a test's workspace holding one package file (text, as
// name) and its own cache.
func packageFile(t *testing.T, name, text string) (dir, cache, path string) {
	t.Helper()
	dir, cache = t.TempDir(), t.TempDir()
	path = filepath.Join(dir, name)
	writeFile(t, path, text)
	return dir, cache, path
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pathURI turns an absolute path into a file: URI.
func pathURI(path string) protocol.DocumentURI {
	return protocol.DocumentURI((&url.URL{Scheme: "file", Path: path}).String())
}

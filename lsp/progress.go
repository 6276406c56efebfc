package lsp

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/nixlayer/nixlayer/runner"
)

// progress reports one build as $/progress begin, report…, end. Without a
// token (the client supports no work-done progress) it is silent.
type progress struct {
	s       *server
	token   json.RawMessage
	message string // the end message
}

// beginProgress uses the client's token or creates one
// (window/workDoneProgress/create); cancelling it from the client
// (window/workDoneProgress/cancel) calls cancel.
func (s *server) beginProgress(ctx context.Context, token json.RawMessage, title string, cancel context.CancelFunc) *progress {
	p := &progress{s: s}
	if len(token) == 0 || string(token) == "null" {
		s.mu.Lock()
		ok := s.caps.Window.WorkDoneProgress
		s.tokenSeq++
		name := fmt.Sprintf("nixlayer-build-%d", s.tokenSeq)
		s.mu.Unlock()
		if !ok {
			return p
		}
		token, _ = json.Marshal(name)
		if err := s.callClient(ctx, "window/workDoneProgress/create", map[string]any{"token": token}); err != nil {
			return p
		}
	}
	p.token = token
	s.mu.Lock()
	s.tokens[string(token)] = cancel
	s.mu.Unlock()
	p.send(map[string]any{"kind": "begin", "title": title, "cancellable": true, "message": "evaluating", "percentage": 0})
	return p
}

func (p *progress) send(value map[string]any) {
	if p.token == nil {
		return
	}
	p.s.notify("$/progress", map[string]any{"token": p.token, "value": value})
}

// event turns a runner event into a report.
func (p *progress) event(e runner.Event) {
	pct := 0
	if e.Total > 0 {
		pct = e.Index * 100 / e.Total
	}
	var msg string
	switch e.Kind {
	case "plan":
		msg = e.Message
	case "cached":
		msg = fmt.Sprintf("[%d/%d] %s cached", e.Index, e.Total, e.Phase)
	case "start":
		pct = (e.Index - 1) * 100 / max(e.Total, 1)
		msg = fmt.Sprintf("[%d/%d] %s", e.Index, e.Total, e.Phase)
	case "done":
		msg = fmt.Sprintf("[%d/%d] %s done in %s", e.Index, e.Total, e.Phase, seconds(e.Elapsed))
	case "failed":
		msg = fmt.Sprintf("[%d/%d] %s failed", e.Index, e.Total, e.Phase)
	case "rewrite", "deliver":
		msg, pct = e.Message, 100
	case "pull", "pulled":
		msg = e.Message
	case "finished":
		msg, pct = "finished in "+seconds(e.Elapsed), 100
	default:
		return
	}
	v := map[string]any{"kind": "report", "message": msg, "percentage": pct, "cancellable": true}
	if e.Phase != "" {
		v["phase"] = e.Phase // an extension clients may ignore
	}
	p.send(v)
}

func (p *progress) end() {
	if p.token == nil {
		return
	}
	p.send(map[string]any{"kind": "end", "message": p.message})
	p.s.mu.Lock()
	delete(p.s.tokens, string(p.token))
	p.s.mu.Unlock()
}

func dirOf(path string) string { return filepath.Dir(path) }

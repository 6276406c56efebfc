package lsp

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/lsp/lens"
)

// progress reports one build as $/progress begin, report…, end. Without a
// token (the client supports no work-done progress) it is silent.
type progress struct {
	s       *server
	token   json.RawMessage
	message string       // the end message
	outcome lens.Outcome // how the build ended, sent with the end
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

// event turns a runner event into a report. Every kind is reported: the
// message is the event's short text, "event" the event itself (its kind
// tells what happened), and the percentage counts phases where the event
// moves through them.
func (p *progress) event(e events.Event) { p.send(lens.ProgressReport(e)) }

func (p *progress) end() {
	if p.token == nil {
		return
	}
	if p.outcome == "" { // ended before it could build
		p.outcome = lens.OutcomeError
	}
	p.send(map[string]any{"kind": "end", "message": p.message, "outcome": p.outcome})
	p.s.mu.Lock()
	delete(p.s.tokens, string(p.token))
	p.s.mu.Unlock()
}

func dirOf(path string) string { return filepath.Dir(path) }

package lsp

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/nixlayer/nixlayer/events"
)

// progress reports one build as $/progress begin, report…, end. Without a
// token (the client supports no work-done progress) it is silent.
type progress struct {
	s       *server
	token   json.RawMessage
	message string  // the end message
	outcome Outcome // how the build ended, sent with the end
}

// Outcome is how a build reported by $/progress ended, sent as "outcome" in
// the end value so that clients need not read the message.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"    // a phase failed, or the evaluation did
	OutcomeCancelled Outcome = "cancelled" // by the client
	OutcomeError     Outcome = "error"     // nixlayer could not build (not the package's fault)
)

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
func (p *progress) event(e events.Event) { p.send(progressReport(e)) }

func progressReport(e events.Event) map[string]any {
	v := map[string]any{"kind": "report", "message": e.Short(), "cancellable": true, "event": e}
	if e.Total > 0 {
		switch e.Kind {
		case events.EventPlan:
			v["percentage"] = 0
		case events.EventStart:
			v["percentage"] = (e.Index - 1) * 100 / e.Total
		case events.EventCached, events.EventDone, events.EventFailed:
			v["percentage"] = e.Index * 100 / e.Total
		}
	}
	switch e.Kind {
	case events.EventRewrite, events.EventVerdict, events.EventDeliver, events.EventFinished:
		v["percentage"] = 100
	}
	if e.Phase != "" {
		v["phase"] = e.Phase // an extension clients may ignore
	}
	return v
}

func (p *progress) end() {
	if p.token == nil {
		return
	}
	if p.outcome == "" { // ended before it could build
		p.outcome = OutcomeError
	}
	p.send(map[string]any{"kind": "end", "message": p.message, "outcome": p.outcome})
	p.s.mu.Lock()
	delete(p.s.tokens, string(p.token))
	p.s.mu.Unlock()
}

func dirOf(path string) string { return filepath.Dir(path) }

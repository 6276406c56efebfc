package lsp

import (
	"context"
	"fmt"
	"strings"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
)

// MethodTargets is nixlayer's request for the targets that match a
// document (params: a text document), for an editor's own picker; the
// result is Targets. nixlayer.chooseTarget then picks one.
const MethodTargets = "nixlayer/targets"

// Targets answers MethodTargets.
type Targets struct {
	// How says which target was evaluated and how it was found ("" for
	// the file itself, or before the first evaluation).
	How    string `json:"how,omitempty"`
	Chosen string `json:"chosen,omitempty"`
	// Choices are the targets that match, when several do.
	Choices []Choice `json:"choices"`
}

// TargetsOf answers MethodTargets from a document's evaluation.
func TargetsOf(ev *Evaluation) Targets {
	t := Targets{Choices: []Choice{}}
	if ev != nil {
		t.How, t.Chosen = ev.How, ev.Chosen
		t.Choices = append(t.Choices, ev.Choices...)
	}
	return t
}

// chooseTarget picks the document's target among those that match it:
// the one named in a.Target, else the one the user picks from a
// window/showMessageRequest. The document is evaluated again.
func (s *server) chooseTarget(ctx context.Context, a CommandArgs) (any, error) {
	s.mu.Lock()
	d := s.docs[a.URI]
	var choices []Choice
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
	var chosen *Choice
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

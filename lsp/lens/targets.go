package lens

import "github.com/nixlayer/nixlayer/lsp/target"

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
	Choices []target.Choice `json:"choices"`
}

// TargetsOf answers MethodTargets from a document's evaluation.
func TargetsOf(ev *target.Evaluation) Targets {
	t := Targets{Choices: []target.Choice{}}
	if ev != nil {
		t.How, t.Chosen = ev.How, ev.Chosen
		t.Choices = append(t.Choices, ev.Choices...)
	}
	return t
}

package lens

import (
	"github.com/nixlayer/nixlayer/lsp/analysis"
	"github.com/nixlayer/nixlayer/phaserules"
)

// MethodPhases is nixlayer's request for the phases a client offers (to
// rebuild from, open a shell at, show the log of): the editor keeps no list
// of its own. Params are a text document position; the result is Phases.
const MethodPhases = "nixlayer/phases"

// Phases answers MethodPhases.
type Phases struct {
	// Phases of the derivation call at the position (or of the file's only
	// one), in build order: the plan's, or before any evaluation the
	// stdenv's standard phases.
	Phases []string `json:"phases"`
	// Planned says whether Phases come from the runner's plan.
	Planned bool `json:"planned"`
	// At is the phase the attribute on the position's line belongs to,
	// "" when the line holds no phase attribute.
	At string `json:"at,omitempty"`
}

// PhasesAt computes the answer to MethodPhases for a line of the buffer.
func PhasesAt(in LensInput, line int) Phases {
	views := analysis.Analyze(in.File, in.Eval)
	var v *analysis.DerivView
	for i := range views {
		start, end := in.File.Position(views[i].Deriv.Call.Start).Line, in.File.Position(views[i].Deriv.Call.End).Line
		if start <= line && line <= end {
			v = &views[i]
		}
	}
	if v == nil && len(views) == 1 {
		v = &views[0]
	}
	out := Phases{Phases: phaserules.StandardNames()}
	if v == nil {
		return out
	}
	if len(v.Phases) > 0 {
		out.Phases, out.Planned = nil, true
		for _, ph := range v.Phases {
			out.Phases = append(out.Phases, ph.Name)
		}
	}
	for _, a := range v.Deriv.Attributes {
		if in.File.Position(a.Key.Start).Line != line {
			continue
		}
		if out.Planned {
			for _, av := range v.Attrs {
				if av.Attr.Key == a.Key {
					out.At = av.Phase
				}
			}
		} else {
			// No plan yet: place it among the standard phases as the plan would.
			rules := phaserules.New(out.Phases, phaserules.Reads{})
			pl := rules.Place(a.Name)
			if analysis.IsPhaseAttr(a.Name, pl, out.Phases) {
				out.At = pl.Phase
			}
		}
		break
	}
	return out
}

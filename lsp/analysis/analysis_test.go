package analysis

import (
	"testing"

	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/planner"
)

func TestMatchByName(t *testing.T) {
	src := `rec {
  a = mkDerivation { pname = "alpha"; buildPhase = "x"; };
  b = mkDerivation { pname = "beta"; buildPhase = "y"; };
}`
	pa, pb := &planner.Plan{Name: "alpha-1"}, &planner.Plan{Name: "beta-1"}
	ev := &target.Evaluation{Packages: []*target.Package{
		{Name: "beta-1", Pname: "beta", Plan: pb},
		{Name: "alpha-1", Pname: "alpha", Plan: pa},
	}}
	vs := Analyze(parser.Parse([]byte(src)), ev)
	if len(vs) != 2 || vs[0].Pkg != ev.Packages[1] || vs[1].Pkg != ev.Packages[0] {
		t.Fatalf("matching by pname failed")
	}
}

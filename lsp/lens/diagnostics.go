package lens

import (
	"fmt"
	"regexp"
	"strconv"

	"go.lsp.dev/protocol"

	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/lsp/analysis"
	"github.com/nixlayer/nixlayer/lsp/target"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

// errPos finds "at FILE:LINE:COL" in Nix's error messages.
var errPos = regexp.MustCompile(`at («stdin»|/[^:\s]+):(\d+):(\d+)`)

// EvalDiagnostic is an evaluation's error on the buffer at path, where
// Nix's message places it (else on its first line).
func EvalDiagnostic(msg, path string) protocol.Diagnostic {
	var pos protocol.Position
	for _, m := range errPos.FindAllStringSubmatch(msg, -1) {
		if m[1] == "«stdin»" || m[1] == path {
			line, _ := strconv.Atoi(m[2])
			col, _ := strconv.Atoi(m[3])
			pos = protocol.Position{Line: uint32(max(line-1, 0)), Character: uint32(max(col-1, 0))}
			break
		}
	}
	return protocol.Diagnostic{
		Range:    protocol.Range{Start: pos, End: pos},
		Severity: protocol.DiagnosticSeverityError,
		Source:   "nixlayer",
		Message:  "nixlayer could not evaluate this package: " + msg,
	}
}

// FailureDiagnostics put each failed phase of the buffer's derivations on
// its attribute.
func FailureDiagnostics(file *syntax.File, ev *target.Evaluation) []protocol.Diagnostic {
	var out []protocol.Diagnostic
	for _, v := range analysis.Analyze(file, ev) {
		if v.Pkg == nil || v.Pkg.Failure == nil {
			continue
		}
		pe := v.Pkg.Failure
		span := analysis.FailureTarget(v, pe.Phase)
		start, end := position(file, span.Start), position(file, span.End)
		out = append(out, protocol.Diagnostic{
			Range:    protocol.Range{Start: start, End: end},
			Severity: protocol.DiagnosticSeverityError,
			Source:   "nixlayer",
			Message:  fmt.Sprintf("%s failed in %s with exit code %d; last log lines:\n%s", v.Pkg.Name, pe.Phase, pe.Exit, logtail.Lines(pe.LogTail, 15)),
		})
	}
	return out
}

package build

import (
	"path/filepath"

	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/verdict"
)

// provisionalCause is the cause of a provisional result that rests on rs
// (nil: no provisional rewrite) and whose outputs were judged ex (nil: not
// judged).
func provisionalCause(rs *resume, ex *verdict.Exactness) results.Cause {
	switch {
	case rs != nil:
		return results.CauseNoMap
	case ex != nil && !ex.Exact:
		return results.CauseInexact
	}
	return results.CauseUnverifiedLayers
}

// resultLinks are the absolute result links a build makes.
func resultLinks(base string, outputs map[string]string) map[string]string {
	if base == "" {
		return nil
	}
	links := map[string]string{}
	for name := range outputs {
		l := linkName(base, name)
		if abs, err := filepath.Abs(l); err == nil {
			l = abs
		}
		links[name] = l
	}
	return links
}

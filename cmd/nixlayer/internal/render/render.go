// Package render is the text and JSON the CLI prints of the engine's
// answers: a build's progress and result, a plan, a verification, ls's
// tables, status, gc's summary and the layer caches' transfers, as pure
// functions of what `api` returns written to the writer given. The
// commands in cmd/nixlayer call it after they asked the engine.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nixlayer/nixlayer/events"
)

// JSON writes v as `--json` prints it: indented, one value.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Note tells the user when the chain taken is not the current
// derivation's (inspect.Selected.Note).
func Note(w io.Writer, text string) {
	if text != "" {
		fmt.Fprintf(w, "nixlayer: note: %s\n", text)
	}
}

func round(d time.Duration) string { return events.Duration(d) }

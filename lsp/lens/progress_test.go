package lens

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/events"
)

// Every event kind the runner sends becomes a report that carries the kind
// and says something.
func TestProgressReportsEveryKind(t *testing.T) {
	for _, k := range events.EventKinds {
		ev := events.Event{Kind: k, Phase: "installPhase", Index: 6, Total: 9, Elapsed: 1500 * time.Millisecond, Message: "what happened"}
		v := ProgressReport(ev)
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
			Event   struct {
				Kind events.EventKind `json:"kind"`
			} `json:"event"`
		}
		json.Unmarshal(js, &back)
		if back.Kind != "report" || back.Event.Kind != k || back.Message == "" {
			t.Errorf("%s: report %s", k, js)
		}
	}
	if v := ProgressReport(events.Event{Kind: events.EventStart, Phase: "installPhase", Index: 6, Total: 9}); v["percentage"] != 55 {
		t.Errorf("start of phase 6/9 at %v%%", v["percentage"])
	}
	if v := ProgressReport(events.Event{Kind: events.EventLearn, Phase: "buildPhase", Index: 2, Total: 4}); v["percentage"] != nil {
		t.Errorf("learning counts its own phases, not the build's: %v%%", v["percentage"])
	}
}

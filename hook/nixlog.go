package hook

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// Nix's structured log protocol: lines "@nix {json}". On the hook's
// stderr they are trusted (activities may be started); on the build log
// (fd 4) Nix honours "setPhase" for the build's own activity, which is what
// its progress line and nix-output-monitor show.
const (
	actUnknown  = 0
	resSetPhase = 104
	lvlInfo     = 3
	lvlTalk     = 4
)

// nixLog writes @nix lines to Nix.
type nixLog struct {
	mu     sync.Mutex
	stderr io.Writer // the hook's reply channel
	build  io.Writer // fd 4
	act    uint64    // our activity on stderr (0: none)
}

func (l *nixLog) emit(w io.Writer, msg map[string]any) {
	if w == nil {
		return
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(w, "@nix %s\n", data)
}

// start opens an activity on stderr describing the layered build, so
// results (phases) can be attached to it.
func (l *nixLog) start(id uint64, text string) {
	l.act = id
	l.emit(l.stderr, map[string]any{"action": "start", "id": id, "level": lvlTalk, "type": actUnknown, "text": text, "parent": 0, "fields": []any{}})
}

// phase reports the current phase twice: as a result on our activity
// (stderr) and as setPhase on the build log, which Nix applies to the
// build's own activity.
func (l *nixLog) phase(name string) {
	if l.act != 0 {
		l.emit(l.stderr, map[string]any{"action": "result", "id": l.act, "type": resSetPhase, "fields": []any{name}})
	}
	l.emit(l.build, map[string]any{"action": "setPhase", "phase": name})
}

func (l *nixLog) stop() {
	if l.act != 0 {
		l.emit(l.stderr, map[string]any{"action": "stop", "id": l.act})
		l.act = 0
	}
}

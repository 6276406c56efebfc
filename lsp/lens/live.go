package lens

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/lsp/target"
)

// This file follows a build as its events arrive, for the live lenses:
// which phase runs and since when, which phases this build already reused
// or finished, and what the engine does besides running phases (waiting
// for a lock, rewriting, learning, …). Like the rest of the features it is
// pure: Running values are immutable, Apply returns the next one.

// Running is a build in progress.
type Running struct {
	// Drv is the derivation being built ("" while the buffer is evaluated).
	Drv     string
	Started time.Time
	// Phase runs now (since PhaseStarted); Index is 1-based, of Total.
	Phase        string
	Index, Total int
	PhaseStarted time.Time
	// Estimate is how long Phase took the last time it was built.
	Estimate time.Duration
	// Finished are the phases this build reused or ran, by name.
	Finished map[string]PhaseDone
	// Failed is the phase that failed, with its exit code.
	Failed string
	Exit   int
	// State is what the engine reports besides phases, until the next
	// phase event (nil: nothing).
	State *target.EngineState
}

// PhaseDone is a phase a running build is done with.
type PhaseDone struct {
	Cached  bool
	Elapsed time.Duration
}

// NewRunning is a build of the buffer that starts at now (evaluating it).
func NewRunning(now time.Time) *Running {
	return &Running{Started: now, Finished: map[string]PhaseDone{}}
}

// Apply returns the build's state after ev, received at now.
func (r *Running) Apply(ev events.Event, now time.Time) *Running {
	next := *r
	next.Finished = maps.Clone(r.Finished)
	if ev.Total > 0 {
		next.Total = ev.Total
	}
	if st := target.StateOf(ev, now); st != nil {
		next.State = st
		return &next
	}
	switch ev.Kind {
	case events.EventCached:
		next.Finished[ev.Phase] = PhaseDone{Cached: true, Elapsed: ev.Elapsed}
		next.State = nil
	case events.EventStart:
		next.Phase, next.Index, next.PhaseStarted, next.Estimate = ev.Phase, ev.Index, now, ev.Estimate
		next.State = nil
	case events.EventDone:
		next.Finished[ev.Phase] = PhaseDone{Elapsed: ev.Elapsed}
		if next.Phase == ev.Phase {
			next.Phase = ""
		}
		next.State = nil
	case events.EventFailed:
		next.Failed, next.Exit, next.Phase = ev.Phase, ev.Exit, ""
	}
	return &next
}

// With is the build once the buffer is evaluated: of drvPath.
func (r *Running) With(drvPath string) *Running {
	next := *r
	next.Drv = drvPath
	return &next
}

// done counts the phases this build is done with.
func (r *Running) done() int { return len(r.Finished) }

// phaseTitle is the lens of phase while this build runs; ok is false for
// a phase the build has not reached (its planned state shows).
func (r *Running) phaseTitle(phase string, now time.Time) (string, bool) {
	if d, ok := r.Finished[phase]; ok {
		if d.Cached {
			return "✓ cached · " + seconds(d.Elapsed), true
		}
		return "✓ done · " + seconds(d.Elapsed), true
	}
	switch phase {
	case r.Phase:
		return "⟳ building · " + elapsedOf(now.Sub(r.PhaseStarted), r.Estimate), true
	case r.Failed:
		return fmt.Sprintf("✗ failed · exit %d", r.Exit), true
	}
	return "", false
}

// summary is the summary lens of the derivation being built: how far the
// build is, and the engine's state.
func (r *Running) summary(now time.Time) string {
	var s string
	switch {
	case r.Drv == "":
		s = "⟳ evaluating · " + elapsed(now.Sub(r.Started))
	case r.Total == 0:
		s = "⟳ planning · " + elapsed(now.Sub(r.Started))
	case r.Phase != "":
		s = fmt.Sprintf("⟳ %d/%d phases done · %s %s", r.done(), r.Total, r.Phase, elapsedOf(now.Sub(r.PhaseStarted), r.Estimate))
	default:
		s = fmt.Sprintf("⟳ %d/%d phases done", r.done(), r.Total)
	}
	if r.State != nil {
		s += " · " + stateText(r.State)
	}
	return s
}

// stateText is how a lens shows an engine state: the engine's own short
// text (its first clause), with a sign for the kinds that mean the author
// waits for something.
func stateText(st *target.EngineState) string {
	text := firstLine(st.Text)
	if i := strings.Index(text, " ("); i > 0 {
		text = text[:i]
	}
	if len(text) > 80 {
		text = text[:80] + "…"
	}
	switch st.Kind {
	case events.EventWait:
		return "⏸ " + text
	case events.EventLearn, events.EventBackground:
		return "◔ " + text
	}
	return text
}

// elapsedOf is "12 s" or, with an estimate, "12 s of ~23 s".
func elapsedOf(d, estimate time.Duration) string {
	if estimate <= 0 {
		return elapsed(d)
	}
	return elapsed(d) + " of ~" + elapsed(estimate)
}

// elapsed is a running time in whole seconds, in steps of five seconds
// past the first minute: what a lens refreshed every second (every five
// past the first minute, LiveInterval) can show.
func elapsed(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60/5*5)
}

// slowLens is how long a running time shows before its lens changes only
// every five seconds.
const slowLens = time.Minute

// LiveInterval is how often the lenses of the running builds change: every
// base interval while some running time is under a minute, five times less
// often after.
func LiveInterval(runs []*Running, now time.Time, base time.Duration) time.Duration {
	for _, r := range runs {
		since := r.Started
		if r.Phase != "" {
			since = r.PhaseStarted
		}
		if now.Sub(since) < slowLens {
			return base
		}
	}
	return 5 * base
}

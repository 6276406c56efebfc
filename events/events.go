// Package events is the vocabulary every face of nixlayer shares about a
// build: the typed progress events the engine (runner) sends to the CLI,
// the hook, the daemon and the language server, the states a result goes
// through, and how they read as text. A leaf: it imports nothing of
// nixlayer, and the engine and the faces import it.
package events

import (
	"fmt"
	"time"
)

// EventKind says what a build Event reports. Consumers switch on it (and on
// the event's other fields), never on Message, which is for people.
type EventKind string

// The kinds of events Build and Learn send, roughly in the order a build
// sends them.
const (
	// EventWait: the build waits for a lock: another build of the same
	// derivation, or a path map being learned in the background.
	EventWait EventKind = "wait"
	// EventRepair: a reused layer is damaged; it is dropped and the build
	// is planned again without it.
	EventRepair EventKind = "repair"
	// EventPlan: the plan is made; Total is the number of phases and
	// Message sums it up.
	EventPlan EventKind = "plan"
	// EventCached: Phase is reused from the cache; Elapsed is how long it
	// took when it was built.
	EventCached EventKind = "cached"
	// EventLearn: learning the chain's output-path map, by running its
	// phases again with a synthetic output path: first an announcement
	// (no Phase), then one event per phase (Phase, Index, Total).
	EventLearn EventKind = "learn"
	// EventLearned: the path map is known (Elapsed is the time learning
	// took, zero when it was already learned) or could not be learned
	// (Message says why; the rewrite falls back to hash substitution).
	EventLearned EventKind = "learned"
	// EventRewrite: reused layers were rewritten for the new output paths;
	// Exact says whether the rewrite is exact.
	EventRewrite EventKind = "rewrite"
	// EventVerdict: the verdict on the outputs of a build on rewritten
	// layers whose path map left bytes unexplained (Exact says whether
	// they are exact; Result.Exactness has the rule and every file), or
	// its prediction from the last build on the same layers.
	EventVerdict EventKind = "verdict"
	// EventFallback: the build changes course (an inexact rewrite is
	// rebuilt with the real output paths, or a phase that exits the
	// builder makes the derivation build in one step).
	EventFallback EventKind = "fallback"
	// EventStart: Phase starts. Follows names the earlier phase it runs
	// because of; otherwise Message says why it must run. Estimate is how
	// long it took the last time it was built.
	EventStart EventKind = "start"
	// EventDone: Phase succeeded in Elapsed.
	EventDone EventKind = "done"
	// EventFailed: Phase failed after Elapsed with Exit; Message is the
	// log tail.
	EventFailed EventKind = "failed"
	// EventDeliver: where the result went (the Nix store, or the cache
	// when it is not verified); Message says which.
	EventDeliver EventKind = "deliver"
	// EventGC: the cache went over its size limit and layers were removed.
	EventGC EventKind = "gc"
	// EventFinished: the build is over, in Elapsed.
	EventFinished EventKind = "finished"
	// EventBackground: work goes on in a detached process after the build
	// returned (learning the chain's path map, then verifying results that
	// wait for it); Message names the process and its log. It outlives the
	// CLI, and the results' states (below) change when it ends.
	EventBackground EventKind = "background"

	// Result states (ResultState, in State; Drv names the derivation,
	// which background work may settle long after its build returned).
	// Build sends EventProvisional (or EventUnverified for --from) after
	// EventDeliver; the background work (Learn) sends the others as it
	// settles a result, and records each in <cache>/status, which
	// `nixlayer status` lists and the language server watches (it
	// refreshes its lenses and forwards the event when a state changes).

	// EventProvisional: the result was delivered at once into the cache
	// without waiting for learning (Message says what is provisional);
	// it is verified or replaced in the background.
	EventProvisional EventKind = "provisional"
	// EventVerifying: the path map is learned; the provisional result is
	// being compared with the exact rewrite (or rebuilt on it).
	EventVerifying EventKind = "verifying"
	// EventVerified: the result is exact and registered in the Nix store
	// (without a rebuild when the provisional rewrite was identical to the
	// exact one); ./result points into the store.
	EventVerified EventKind = "verified"
	// EventReplaced: the provisional result was not exact; an exact
	// rebuild replaced it (Message says why and what was rerun).
	EventReplaced EventKind = "replaced"
	// EventUnverified: the result will not be verified (a forced --from
	// reuse, or the background verification failed: Message says why).
	EventUnverified EventKind = "unverified"
	// EventPull: a pull from a layer cache starts; Bytes is what it will
	// download, Message what and from where.
	EventPull EventKind = "pull"
	// EventPulled: a pull is done: Bytes downloaded in Elapsed; Message
	// says how many layers, from where, and whether they are verified.
	EventPulled EventKind = "pulled"
	// EventPush: the chain is being pushed to the config's pushTo.
	EventPush EventKind = "push"
	// EventPushed: a push is done: Bytes sent in Elapsed (0 when the
	// registry had everything).
	EventPushed EventKind = "pushed"
	// EventAudit: the background work audits a resumed result (builds it
	// again from scratch and compares, audit.go): its start, each phase
	// of the clean build (Phase, Index, Total), and an audit that found no
	// difference or could not be made (Message says which). An audit that
	// finds a difference ends in EventReplaced.
	EventAudit EventKind = "audit"
	// EventWarning: a layer cache could not be used (down, slow, refused
	// chain) or a push failed; the build goes on without it. One line.
	EventWarning EventKind = "warning"
)

// EventKinds lists every kind, for consumers that must handle them all.
var EventKinds = []EventKind{EventWait, EventRepair, EventPlan, EventCached, EventLearn, EventLearned,
	EventRewrite, EventVerdict, EventFallback, EventStart, EventDone, EventFailed, EventDeliver, EventGC, EventFinished,
	EventBackground, EventProvisional, EventVerifying, EventVerified, EventReplaced, EventUnverified,
	EventPull, EventPulled, EventPush, EventPushed, EventAudit, EventWarning}

// Event is a progress report of a build.
type Event struct {
	Kind    EventKind     `json:"kind"`
	Phase   string        `json:"phase,omitempty"`
	Index   int           `json:"index"` // 1-based phase number
	Total   int           `json:"total"`
	Elapsed time.Duration `json:"elapsed,omitempty"`
	// Follows is set on EventStart when the phase runs only because an
	// earlier one (this one) runs.
	Follows string `json:"follows,omitempty"`
	// Estimate is set on EventStart: how long the phase took the last time
	// it was built for this package (0: never).
	Estimate time.Duration `json:"estimate,omitempty"`
	// Layer is the phase's layer on EventCached, EventDone and EventFailed.
	Layer string `json:"layer,omitempty"`
	// Exit is the failed phase's exit code on EventFailed.
	Exit int `json:"exit,omitempty"`
	// Exact is set on EventRewrite when the rewrite is exact, and on
	// EventVerdict when the outputs are.
	Exact bool `json:"exact,omitempty"`
	// State is the result's state on the result-state events.
	State ResultState `json:"state,omitempty"`
	// Drv is the derivation a result-state event is about.
	Drv     string `json:"drv,omitempty"`
	Message string `json:"message,omitempty"`
	// Bytes is set on EventPull, EventPulled and EventPushed.
	Bytes int64 `json:"bytes,omitempty"`
}

// phaseColumn is the width phase names are padded to in terminal text, so
// that the states line up.
const phaseColumn = 18

// Text renders an event as one line for a terminal or a build log (the
// caller adds its "nixlayer: " prefix); "" for an event that says nothing
// on its own. The CLI and the hook print it.
func (ev Event) Text() string { return ev.render(phaseColumn) }

// Short renders an event like Text without aligning phase names, for a
// status line (the language server's progress reports).
func (ev Event) Short() string { return ev.render(0) }

func (ev Event) render(width int) string {
	step := fmt.Sprintf("[%d/%d] %-*s", ev.Index, ev.Total, width, ev.Phase)
	switch ev.Kind {
	case EventCached:
		return fmt.Sprintf("%s cached (took %s when built)", step, Duration(ev.Elapsed))
	case EventStart:
		if ev.Follows != "" || ev.Message == "" {
			return step + " running"
		}
		return step + " running: " + ev.Message
	case EventDone:
		return fmt.Sprintf("%s done in %s", step, Duration(ev.Elapsed))
	case EventFailed:
		return fmt.Sprintf("%s FAILED after %s", step, Duration(ev.Elapsed))
	case EventFinished:
		return "finished in " + Duration(ev.Elapsed)
	case EventWarning:
		return "warning: " + ev.Message
	}
	return ev.Message
}

// Duration is how events show a duration: two decimals under a second,
// tenths above.
func Duration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(100 * time.Millisecond).String()
}

// AgeUnits name the units of an age, each face in its own words: seconds,
// minutes, hours, days.
type AgeUnits [4]string

// Age is how the faces show how long ago something was: whole seconds
// under a minute, minutes under an hour, hours under two days, then days.
func Age(d time.Duration, units AgeUnits) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d%s", int(d.Seconds()), units[0])
	case d < time.Hour:
		return fmt.Sprintf("%d%s", int(d.Minutes()), units[1])
	case d < 48*time.Hour:
		return fmt.Sprintf("%d%s", int(d.Hours()), units[2])
	}
	return fmt.Sprintf("%d%s", int(d.Hours()/24), units[3])
}

// StillRunning is the heartbeat line for a phase that started with ev and
// has run for d, for a terminal that may hide the build log.
func (ev Event) StillRunning(d time.Duration) string {
	return fmt.Sprintf("[%d/%d] %-*s still running (%s)", ev.Index, ev.Total, phaseColumn, ev.Phase, Duration(d))
}

// ResultState is where a build's result stands: `nixlayer status` lists
// them, the language server shows them in its summary lens.
type ResultState string

const (
	// StateProvisional: delivered at once into the cache (./result points
	// there), resting on a rewrite or on layers not yet confirmed; the
	// background learner verifies or replaces it. Never in the Nix store.
	StateProvisional ResultState = "provisional"
	// StateVerifying: the path map is learned; the background work is
	// comparing the provisional rewrite with the exact one, or rebuilding
	// the later phases on the exact rewrite.
	StateVerifying ResultState = "verifying"
	// StateVerified: exact, registered in the Nix store (kept in the cache
	// when this user cannot register).
	StateVerified ResultState = "verified"
	// StateReplaced: the provisional result was not exact; an exact
	// rebuild (of the phases that needed it) replaced it.
	StateReplaced ResultState = "replaced"
	// StateUnverified: never verified: a forced reuse (--from), or the
	// background verification failed (Why says why; `nixlayer build
	// --exact` rebuilds it).
	StateUnverified ResultState = "unverified"
)

// Pending reports whether background work will still change the state.
func (s ResultState) Pending() bool { return s == StateProvisional || s == StateVerifying }

// Kind is the event that announces a result entering state s.
func (s ResultState) Kind() EventKind { return stateEvents[s] }

var stateEvents = map[ResultState]EventKind{
	StateProvisional: EventProvisional,
	StateVerifying:   EventVerifying,
	StateVerified:    EventVerified,
	StateReplaced:    EventReplaced,
	StateUnverified:  EventUnverified,
}

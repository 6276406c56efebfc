package events

import (
	"testing"
	"time"
)

// The text of every kind, as the CLI and the hook print it.
func TestEventText(t *testing.T) {
	step := Event{Phase: "installPhase", Index: 6, Total: 9, Elapsed: 1234 * time.Millisecond}
	with := func(k EventKind, f func(*Event)) Event {
		ev := step
		ev.Kind = k
		if f != nil {
			f(&ev)
		}
		return ev
	}
	for _, c := range []struct {
		ev   Event
		want string
	}{
		{with(EventCached, nil), "[6/9] installPhase       cached (took 1.2s when built)"},
		{with(EventStart, func(e *Event) { e.Message = "postInstall changed" }), "[6/9] installPhase       running: postInstall changed"},
		{with(EventStart, func(e *Event) { e.Follows, e.Message = "buildPhase", "follows buildPhase" }), "[6/9] installPhase       running"},
		{with(EventDone, func(e *Event) { e.Elapsed = 250 * time.Millisecond }), "[6/9] installPhase       done in 0.25s"},
		{with(EventFailed, func(e *Event) { e.Message = "log tail" }), "[6/9] installPhase       FAILED after 1.2s"},
		{Event{Kind: EventFinished, Total: 9, Elapsed: 3 * time.Second}, "finished in 3s"},
		{Event{Kind: EventPlan, Total: 9, Message: "hello-1: 9 phases, 5 cached"}, "hello-1: 9 phases, 5 cached"},
		{Event{Kind: EventWait, Message: "waiting"}, "waiting"},
		{Event{Kind: EventWarning, Message: "layer cache r unreachable; building locally"}, "warning: layer cache r unreachable; building locally"},
		{Event{Kind: EventPulled, Bytes: 1 << 20, Message: "pulled 5 layers (1.0 MiB)"}, "pulled 5 layers (1.0 MiB)"},
	} {
		if got := c.ev.Text(); got != c.want {
			t.Errorf("%s: %q, want %q", c.ev.Kind, got, c.want)
		}
	}
	if got := with(EventDone, nil).Short(); got != "[6/9] installPhase done in 1.2s" {
		t.Errorf("short: %q", got)
	}
	// Every kind says something when it carries a message.
	for _, k := range EventKinds {
		if with(k, func(e *Event) { e.Message = "m" }).Text() == "" {
			t.Errorf("%s renders nothing", k)
		}
	}
}

// An age is shown in its coarsest readable unit, in the face's words.
func TestAge(t *testing.T) {
	short := AgeUnits{"s", "m", "h", "d"}
	for d, want := range map[time.Duration]string{
		59 * time.Second:             "59s",
		time.Minute:                  "1m",
		59*time.Minute + time.Second: "59m",
		time.Hour:                    "1h",
		47 * time.Hour:               "47h",
		48 * time.Hour:               "2d",
		10*24*time.Hour + time.Hour:  "10d",
	} {
		if got := Age(d, short); got != want {
			t.Errorf("Age(%s) = %q, want %q", d, got, want)
		}
	}
	if got := Age(90*time.Minute, AgeUnits{" s", " min", " h", " days"}); got != "1 h" {
		t.Errorf("Age in the language server's words: %q", got)
	}
}

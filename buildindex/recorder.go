package buildindex

import (
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/events"
)

// Recorder records the phases of one build in the cache's phase history
// as its events report them: reused, ran, failed, and the phase a build
// was broken off in. The layered build wraps its progress with it.
type Recorder struct {
	cacheDir string
	log      *zap.Logger
	base     PhaseRun
	started  *events.Event // the phase running now
	t0       time.Time     // when it started
}

// NewRecorder records the phases of the build of drvPath (of package pkg)
// started at start in cacheDir's phase history.
func NewRecorder(cacheDir string, log *zap.Logger, drvPath, pkg string, start time.Time) *Recorder {
	return &Recorder{cacheDir: cacheDir, log: log, base: PhaseRun{Build: start, Drv: drvPath, Package: pkg}}
}

// Observe wraps a build's progress function.
func (h *Recorder) Observe(next func(events.Event)) func(events.Event) {
	return func(ev events.Event) {
		switch ev.Kind {
		case events.EventCached:
			h.add(ev, RunCached, ev.Elapsed, nil)
		case events.EventStart:
			s := ev
			h.started, h.t0 = &s, time.Now()
		case events.EventDone:
			h.add(ev, RunRan, ev.Elapsed, h.started)
			h.started = nil
		case events.EventFailed:
			h.add(ev, RunFailed, ev.Elapsed, h.started)
			h.started = nil
		case events.EventFallback:
			h.started = nil // the build starts over (in one step)
		}
		next(ev)
	}
}

// End records the phase a build that returned err was broken off in.
func (h *Recorder) End(err error) {
	if err == nil || h.started == nil {
		return
	}
	h.add(*h.started, RunInterrupted, time.Since(h.t0), h.started)
	h.started = nil
}

func (h *Recorder) add(ev events.Event, status RunStatus, took time.Duration, start *events.Event) {
	r := h.base
	r.Time, r.Phase, r.Index, r.Total, r.Status, r.Duration, r.Layer = time.Now(), ev.Phase, ev.Index, ev.Total, status, took, ev.Layer
	if start != nil {
		r.Reason, r.Follows = start.Message, start.Follows
	}
	if status == RunFailed {
		r.Exit, r.LogTail = ev.Exit, ev.Message
	}
	if err := AppendRun(h.cacheDir, r); err != nil {
		h.log.Warn("recording the phase history", zap.Error(err))
	}
}

package runner

import (
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/phaserun"
)

// history records the phases of one build in the cache's phase history
// (buildindex) as its events report them: reused, ran, failed, and the
// phase a build was broken off in.
type history struct {
	e       *Engine
	base    buildindex.PhaseRun
	started *events.Event // the phase running now
	t0      time.Time     // when it started
}

func (e *Engine) newHistory(j *phaserun.Job, start time.Time) *history {
	return &history{e: e, base: buildindex.PhaseRun{Build: start, Drv: j.Drv.Path, Package: j.Pkg}}
}

// observe wraps a build's progress function.
func (h *history) observe(next func(events.Event)) func(events.Event) {
	return func(ev events.Event) {
		switch ev.Kind {
		case events.EventCached:
			h.add(ev, buildindex.RunCached, ev.Elapsed, nil)
		case events.EventStart:
			s := ev
			h.started, h.t0 = &s, time.Now()
		case events.EventDone:
			h.add(ev, buildindex.RunRan, ev.Elapsed, h.started)
			h.started = nil
		case events.EventFailed:
			h.add(ev, buildindex.RunFailed, ev.Elapsed, h.started)
			h.started = nil
		case events.EventFallback:
			h.started = nil // the build starts over (in one step)
		}
		next(ev)
	}
}

// end records the phase a build that returned err was broken off in.
func (h *history) end(err error) {
	if err == nil || h.started == nil {
		return
	}
	h.add(*h.started, buildindex.RunInterrupted, time.Since(h.t0), h.started)
	h.started = nil
}

func (h *history) add(ev events.Event, status buildindex.RunStatus, took time.Duration, start *events.Event) {
	r := h.base
	r.Time, r.Phase, r.Index, r.Total, r.Status, r.Duration, r.Layer = time.Now(), ev.Phase, ev.Index, ev.Total, status, took, ev.Layer
	if start != nil {
		r.Reason, r.Follows = start.Message, start.Follows
	}
	if status == buildindex.RunFailed {
		r.Exit, r.LogTail = ev.Exit, ev.Message
	}
	if err := buildindex.AppendRun(h.e.opts.CacheDir, r); err != nil {
		h.e.log.Warn("recording the phase history", zap.Error(err))
	}
}

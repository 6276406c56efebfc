package lsp

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/results"
)

// ResultStateMethod is the notification the server sends when the state
// of a result shown in an open document changes (background work settled
// a provisional result): its params are the events.Event announcing the
// new state (Kind provisional, verifying, verified, replaced or
// unverified; State, Drv and Message set).
const ResultStateMethod = "nixlayer/resultState"

// watchResults follows the states of the open documents' results and the
// background work on their packages, which other processes change: on a
// change it updates the documents' evaluations, tells the client of a
// result's new state and refreshes the lenses.
func (s *server) watchResults(ctx context.Context, every time.Duration) {
	poll.Every(ctx, every, func() bool {
		evs, changed := s.updateResults()
		for _, ev := range evs {
			s.notify(ResultStateMethod, ev)
		}
		if changed {
			s.lensesChanged()
		}
		return false
	})
}

// updateResults reads the records of the open documents' packages and the
// background jobs on the cache, and installs what changed; it returns an
// event per changed result, and whether anything changed.
func (s *server) updateResults() ([]events.Event, bool) {
	s.mu.Lock()
	var docs []*document
	var drvs []string
	for _, d := range s.docs {
		if d.eval != nil {
			docs = append(docs, d)
			for _, p := range d.eval.Packages {
				drvs = append(drvs, p.DrvPath)
			}
		}
	}
	s.mu.Unlock()
	if len(drvs) == 0 {
		return nil, false
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil, false
	}
	rr, err := eng.Results(s.ctx, api.ResultsRequest{Drvs: drvs})
	if err != nil {
		s.log.Debug("reading result states", zap.Error(err))
		return nil, false
	}
	records := map[string]*results.Record{}
	for _, r := range rr.Results {
		records[r.Drv] = r
	}
	var evs []events.Event
	anyChange := false
	for _, d := range docs {
		s.mu.Lock()
		ev := d.eval
		s.mu.Unlock()
		var changed []*results.Record
		fresh := map[string]*results.Record{}
		jobs := map[string]*results.Job{}
		jobsChanged := false
		for _, p := range ev.Packages {
			if r := records[p.DrvPath]; r != nil && !sameRecord(p.Result, r) {
				fresh[p.DrvPath] = r
				changed = append(changed, r)
			}
			jobs[p.DrvPath] = backgroundOf(p, rr.Background)
			if !sameJob(p.Background, jobs[p.DrvPath]) {
				jobsChanged = true
			}
		}
		if len(changed) == 0 && !jobsChanged {
			continue
		}
		anyChange = true
		s.mu.Lock()
		if d.eval == ev { // else a newer evaluation read the records itself
			d.eval = ev.withPackages(func(cp *Package) {
				if r := fresh[cp.DrvPath]; r != nil {
					cp.Result = r
				}
				cp.Background = jobs[cp.DrvPath]
			})
		}
		s.mu.Unlock()
		for _, r := range changed {
			evs = append(evs, r.Event())
		}
	}
	return evs, anyChange
}

// backgroundOf is the background work running on a package's chain, if
// any: for its derivation, or another derivation of the same package.
func backgroundOf(p *Package, jobs []results.Job) *results.Job {
	for i, j := range jobs {
		if j.Drv == p.DrvPath || (p.Plan != nil && j.Package != "" && j.Package == p.Plan.Package) {
			return &jobs[i]
		}
	}
	return nil
}

func sameJob(a, b *results.Job) bool {
	return (a == nil) == (b == nil) && (a == nil || a.PID == b.PID)
}

func sameRecord(a, b *results.Record) bool {
	return a != nil && b != nil && a.State == b.State && a.Updated.Equal(b.Updated)
}

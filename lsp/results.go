package lsp

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/runner"
)

// ResultStateMethod is the notification the server sends when the state
// of a result shown in an open document changes (background work settled
// a provisional result): its params are the runner.Event announcing the
// new state (Kind provisional, verifying, verified, replaced or
// unverified; State, Drv and Message set).
const ResultStateMethod = "nixlayer/resultState"

// watchResults follows the states of the open documents' results, which
// background work (another process) changes: on a change it updates the
// documents' evaluations, tells the client and refreshes the lenses.
func (s *server) watchResults(ctx context.Context, every time.Duration) {
	poll.Every(ctx, every, func() bool {
		if evs := s.updateResults(); len(evs) > 0 {
			for _, ev := range evs {
				s.notify(ResultStateMethod, ev)
			}
			s.refreshLenses()
		}
		return false
	})
}

// updateResults reads the records of the open documents' packages and
// installs the changed ones; it returns an event per change.
func (s *server) updateResults() []runner.Event {
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
		return nil
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil
	}
	rr, err := eng.Results(s.ctx, api.ResultsRequest{Drvs: drvs})
	if err != nil {
		s.log.Debug("reading result states", zap.Error(err))
		return nil
	}
	records := map[string]*runner.ResultRecord{}
	for _, r := range rr.Results {
		records[r.Drv] = r
	}
	var evs []runner.Event
	for _, d := range docs {
		s.mu.Lock()
		ev := d.eval
		s.mu.Unlock()
		var changed []*runner.ResultRecord
		fresh := map[string]*runner.ResultRecord{}
		for _, p := range ev.Packages {
			r := records[p.DrvPath]
			if r == nil || sameRecord(p.Result, r) {
				continue
			}
			fresh[p.DrvPath] = r
			changed = append(changed, r)
		}
		if len(changed) == 0 {
			continue
		}
		s.mu.Lock()
		if d.eval == ev { // else a newer evaluation read the records itself
			d.eval = ev.withPackages(func(cp *Package) {
				if r := fresh[cp.DrvPath]; r != nil {
					cp.Result = r
				}
			})
		}
		s.mu.Unlock()
		for _, r := range changed {
			evs = append(evs, runner.StateEvent(r))
		}
	}
	return evs
}

func sameRecord(a, b *runner.ResultRecord) bool {
	return a != nil && b != nil && a.State == b.State && a.Updated.Equal(b.Updated)
}

package build

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/cacheconfig"
	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/results"
)

// resultState says where a finished build's result stands.
func resultState(res *Result, o *Outcome) {
	switch {
	case res.Verified && res.Rewrite != nil:
		res.State, res.Why = events.StateVerified, "resumed with an exact rewrite of the reused layers (learned path map)"
	case res.Verified:
		res.State, res.Why = events.StateVerified, "built with the real output paths"
	case res.Plan != nil && res.Plan.HasForced():
		res.State, res.Why = events.StateUnverified, res.WhyNotVerified()
	case o.provisional != nil:
		res.State, res.Why = events.StateProvisional, "the reused layers were rewritten provisionally, without waiting for their path map; the learned map verifies the result in the background (or the later phases rerun on the exact rewrite)"
	case res.Exactness != nil && !res.Exactness.Exact:
		ex := res.Exactness
		res.State, res.Why = events.StateProvisional, "outputs not exact ("+ex.Summary+"); an exact rebuild"
		if ex.RebuildFrom != "" {
			res.Why += " from " + ex.RebuildFrom
		}
		res.Why += " replaces it in the background (nixlayer verify lists every file)"
	default:
		res.State, res.Why = events.StateProvisional, "it reuses layers that rest on an inexact rewrite of an earlier build; an exact rebuild replaces it in the background"
	}
}

// recordResult keeps the result's state for `nixlayer status`, the editor
// and the background work.
func (b *Builder) recordResult(j *phaserun.Job, res *Result, bo BuildOptions, o *Outcome, progress func(events.Event)) {
	r := &results.Record{
		Drv: j.Drv.Path, Name: j.Drv.Name, Package: j.Pkg, State: res.State, Why: res.Why,
		Outputs: res.Outputs, Built: time.Now(), Top: res.TopLayer,
	}
	if link := cmp.Or(bo.ResultLink, bo.RecordLink); link != "" {
		r.Links = resultLinks(link, res.Outputs)
	}
	r.ResultsDir = b.ResultsDir(bo.ResultsDir)
	r.Owner = bo.ResultOwner
	if old, _ := results.Of(b.CacheDir, j.Drv.Path); old != nil && old.State.Pending() && old.Top == res.TopLayer && res.State == events.StateProvisional {
		// The same provisional result again: it keeps what settles it.
		for name, l := range r.Links {
			if old.Links == nil {
				old.Links = map[string]string{}
			}
			old.Links[name] = l
		}
		old.Outputs = res.Outputs
		res.Why = old.Why
		r = old
	} else if res.State == events.StateProvisional {
		r.Cause = provisionalCause(o.provisional, res.Exactness)
		if rs := o.provisional; rs != nil {
			r.Reused, r.RewriteLayer, r.Created, r.Old2New = rs.n, rs.layer, o.created, rs.old2new
			if len(rs.chain) > 0 {
				r.ReusedTop = rs.chain[len(rs.chain)-1].ID
			}
		}
	}
	if len(res.Reused) > 0 && r.Audit == nil && res.State != events.StateUnverified {
		// A resumed result: the audit's rate decides whether a clean build
		// checks it in the background (background/audit.go).
		chosen, err := b.auditChosen()
		if err != nil {
			progress(events.Event{Kind: events.EventWarning, Message: "no audit: " + err.Error()})
		} else if chosen {
			r.Audit = &results.Audit{State: results.AuditDue}
		}
	}
	if err := results.Save(b.CacheDir, r); err != nil {
		b.Log.Warn("recording the result's state", zap.Error(err))
	}
	if res.State != events.StateVerified {
		progress(events.Event{Kind: res.State.Kind(), State: res.State, Drv: r.Drv, Message: string(res.State) + " result: " + res.Why})
	}
}

// auditChosen decides whether a resumed result is audited: every one, or
// one in N by a counter kept in the cache (a steady rate, unlike chance).
func (b *Builder) auditChosen() (bool, error) {
	cfg, err := cacheconfig.Read(b.CacheDir)
	if err != nil {
		return false, err
	}
	every, err := cfg.AuditEvery(os.Getenv)
	if err != nil || every <= 1 {
		return every == 1, err
	}
	unlock, err := b.Locks.Exclusive(context.Background(), cachelock.AuditCount, "", nil)
	if err != nil {
		return false, err
	}
	defer unlock()
	p := filepath.Join(b.CacheDir, "audit-count")
	data, _ := os.ReadFile(p)
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	n++
	if err := os.WriteFile(p, []byte(strconv.Itoa(n)+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("audit counter: %w", err)
	}
	return n%every == 0, nil
}

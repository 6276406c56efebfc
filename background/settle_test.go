package background

import (
	"errors"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nixlayer/nixlayer/access"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/verdict"
)

// What settling a pending result does first, by the record read under
// the build lock.
func TestSettleFirst(t *testing.T) {
	for _, c := range []struct {
		name  string
		state events.ResultState
		noMap bool
		want  settleStep
	}{
		{"a provisional rewrite is compared with the exact one", events.StateProvisional, true, settleCompare},
		{"one a stopped settling left verifying is compared again", events.StateVerifying, true, settleCompare},
		{"inexact outputs are rebuilt exactly", events.StateProvisional, false, settleRebuild},
		{"a result left verifying is rebuilt exactly", events.StateVerifying, false, settleRebuild},
		{"verified meanwhile: nothing", events.StateVerified, true, settleNothing},
		{"replaced meanwhile: nothing", events.StateReplaced, false, settleNothing},
		{"unverified: nothing", events.StateUnverified, false, settleNothing},
	} {
		if got := settleFirst(c.state, c.noMap); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// A compared provisional rewrite stands only when confirm verified it;
// otherwise the exact rebuild says why it replaces it.
func TestAfterCompare(t *testing.T) {
	for _, c := range []struct {
		name      string
		confirmed bool
		reason    string
		err       error
		stands    bool
		why       string
	}{
		{"confirmed: it stands", true, "", nil, true, ""},
		{"not confirmed: rebuilt for confirm's reason", false, "the provisional result's layers are gone", nil, false, "the provisional result's layers are gone"},
		{"not compared: rebuilt, saying why", false, "", errors.New("mount: busy"), false, "it could not be compared with the exact rewrite: mount: busy"},
	} {
		stands, why := afterCompare(c.confirmed, c.reason, c.err)
		if stands != c.stands || why != c.why {
			t.Errorf("%s: %v %q, want %v %q", c.name, stands, why, c.stands, c.why)
		}
	}
}

// The state an exact rebuild leaves a settled result in.
func TestAfterRebuild(t *testing.T) {
	const why = "the provisional rewrite differs from the exact one in 1 file(s) (out/bin/hello)"
	failed := errors.New("builder failed\nwith a long log")
	for _, c := range []struct {
		name    string
		ran     []string
		err     error
		stopped bool
		state   events.ResultState
		msg     string
		settled bool
	}{
		{"rebuilt: replaced, naming what reran", []string{"buildPhase", "installPhase"}, nil, false,
			events.StateReplaced, why + "; replaced by an exact rebuild (ran: buildPhase installPhase)", true},
		{"nothing to rerun: replaced all the same", nil, nil, false,
			events.StateReplaced, why + "; replaced by an exact rebuild (nothing to rerun)", true},
		{"rebuilt, then stopped: replaced", []string{"installPhase"}, nil, true,
			events.StateReplaced, why + "; replaced by an exact rebuild (ran: installPhase)", true},
		{"the rebuild failed: unverified, with the error's first line", nil, failed, false,
			events.StateUnverified, "the exact rebuild failed: builder failed; `nixlayer build --exact` retries", true},
		{"the rebuild was stopped: left pending", nil, failed, true, "", "", false},
	} {
		state, msg, settled := afterRebuild(why, c.ran, c.err, c.stopped)
		if state != c.state || msg != c.msg || settled != c.settled {
			t.Errorf("%s: %q %q %v, want %q %q %v", c.name, state, msg, settled, c.state, c.msg, c.settled)
		}
	}
}

// Whether a provisional rewrite compares as the exact one: files the map
// cannot explain may differ, as the exact rewrite leaves them as they are.
func TestCompareRewrites(t *testing.T) {
	for _, c := range []struct {
		name                      string
		failed, diff, unexplained []string
		same                      bool
		how                       string
	}{
		{"the exact rewrite failed", []string{"a: ambiguous", "b: ambiguous", "c: ambiguous"}, nil, nil,
			false, "the reused layers cannot be rewritten exactly (a: ambiguous; b: ambiguous; and 1 more)"},
		{"identical", nil, nil, []string{"/out/lib/x.a"},
			true, "the provisional rewrite was identical to the exact one"},
		{"differing only in files the map cannot explain", nil, []string{"./out/lib/x.a", "/out/lib/y.a"}, []string{"/out/lib/x.a", "out/lib/y.a"},
			true, "the provisional rewrite equals the exact one but in 2 file(s) the path map cannot explain, which reach no output"},
		{"differing in one file the map cannot explain", nil, []string{"./out/lib/x.a"}, []string{"/out/lib/x.a"},
			true, "the provisional rewrite equals the exact one but in 1 file(s) the path map cannot explain, which reach no output"},
		{"differing in a file the map explains", nil, []string{"./out/bin/hello", "./out/lib/x.a"}, []string{"/out/lib/x.a"},
			false, "the provisional rewrite differs from the exact one in 1 file(s) (./out/bin/hello)"},
		{"differing in many files", nil, []string{"a", "b", "c", "d"}, nil,
			false, "the provisional rewrite differs from the exact one in 4 file(s) (a; b; c; and 1 more)"},
	} {
		same, how := compareRewrites(c.failed, c.diff, c.unexplained)
		if same != c.same || how != c.how {
			t.Errorf("%s: %v %q, want %v %q", c.name, same, how, c.same, c.how)
		}
	}
}

// How a confirmed result is said to stand, and why one on inexact
// outputs does not.
func TestConfirmedWhy(t *testing.T) {
	const how = "the provisional rewrite was identical to the exact one"
	for _, c := range []struct {
		name    string
		inStore bool
		want    string
	}{
		{"registered", true, how + ": verified without a rebuild, registered in the Nix store"},
		{"kept in the cache", false, how + ": verified without a rebuild, kept in the cache (only root can register it in the store)"},
	} {
		if got := confirmedWhy(how, c.inStore); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	ex := &verdict.Exactness{Summary: "build-id: 1 file(s): bin/hello"}
	if got, want := outputsNotExact(ex), "the provisional rewrite equals the exact one, but the outputs are NOT exact (build-id: 1 file(s): bin/hello)"; got != want {
		t.Errorf("outputs not exact: %q, want %q", got, want)
	}
}

// A provisional result on a chain with an unverified layer cannot be
// confirmed; a layer from before verification was recorded counts as
// verified.
func TestFirstUnverified(t *testing.T) {
	yes, no := true, false
	layer := func(phase string, v *bool) *layers.Layer {
		return &layers.Layer{Meta: layers.Meta{Phase: phase, Verified: v}}
	}
	for _, c := range []struct {
		name  string
		chain []*layers.Layer
		phase string
		found bool
	}{
		{"all verified", []*layers.Layer{layer("unpackPhase", &yes), layer("buildPhase", nil)}, "", false},
		{"the first unverified is named", []*layers.Layer{layer("unpackPhase", &yes), layer("buildPhase", &no), layer("installPhase", &no)}, "buildPhase", true},
		{"no chain", nil, "", false},
	} {
		phase, found := firstUnverified(c.chain)
		if phase != c.phase || found != c.found {
			t.Errorf("%s: %q %v, want %q %v", c.name, phase, found, c.phase, c.found)
		}
	}
}

// The chain whose maps learnNewest learns.
func TestNewestToLearn(t *testing.T) {
	ph := func(name, layer, s string) planner.PhasePlan {
		return planner.PhasePlan{Name: name, Status: s, Layer: &planner.LayerInfo{ID: layer}}
	}
	for _, c := range []struct {
		name string
		plan planner.Plan
		n    int
		top  string
		err  string
	}{
		{"built whole: nothing to learn", planner.Plan{Whole: true, Phases: []planner.PhasePlan{{Name: "build", Status: planner.StatusRun}}}, 0, "", ""},
		{"nothing cached: build it first", planner.Plan{Phases: []planner.PhasePlan{{Name: "unpackPhase", Status: planner.StatusRun}}}, 0, "", "hello has no cached layers to learn from: build it first"},
		{"a cached prefix", planner.Plan{Phases: []planner.PhasePlan{ph("unpackPhase", "l1", planner.StatusCached), ph("buildPhase", "l2", planner.StatusCached), {Name: "installPhase", Status: planner.StatusRun}}}, 2, "l2", ""},
		{"every phase cached", planner.Plan{Phases: []planner.PhasePlan{ph("unpackPhase", "l1", planner.StatusCached), ph("buildPhase", "l2", planner.StatusCached)}}, 2, "l2", ""},
	} {
		n, top, err := newestToLearn(&c.plan, "hello")
		if n != c.n || top != c.top || (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("%s: %d %q %v, want %d %q %q", c.name, n, top, err, c.n, c.top, c.err)
		}
	}
}

// The background work after a failed step: a yield ends it quietly, a
// cancellation with the error, anything else goes on.
func TestAfterBackgroundError(t *testing.T) {
	for _, c := range []struct {
		name               string
		yielded, cancelled bool
		want               bgErrorStep
	}{
		{"a failure: go on", false, false, bgGoOn},
		{"cancelled: stop with the error", false, true, bgStop},
		{"yielded to a foreground build: stop quietly", true, true, bgYield},
		{"yielded, the context not yet done: stop quietly", true, false, bgYield},
	} {
		if got := afterBackgroundError(c.yielded, c.cancelled); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// An error learning a newest chain fails Learn only for the derivation
// asked about, and only when Learn did nothing else.
func TestLearnErrorIsCallers(t *testing.T) {
	for _, c := range []struct {
		name                    string
		asked, learnedAny, busy bool
		want                    bool
	}{
		{"the derivation asked about, nothing done", true, false, false, true},
		{"another derivation's chain", false, false, false, false},
		{"a chain was learned", true, true, false, false},
		{"results were settled", true, false, true, false},
	} {
		if got := learnErrorIsCallers(c.asked, c.learnedAny, c.busy); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// An error settling or auditing a result reaches the caller only when the
// caller may see the result; otherwise it is logged.
func TestReportTo(t *testing.T) {
	store := nixstore.StoreDir() + "/"
	for _, c := range []struct {
		name     string
		v        *access.Viewer
		r        results.Record
		reported bool
	}{
		{"the engine's own user", nil, results.Record{Drv: "a.drv", Outputs: map[string]string{"out": "/cache/a"}}, true},
		{"the caller's own result", &access.Viewer{UID: 1000}, results.Record{Drv: "a.drv", Owner: &results.Owner{UID: 1000}, Outputs: map[string]string{"out": "/cache/a"}}, true},
		{"another's result in the store", &access.Viewer{UID: 1000}, results.Record{Drv: "a.drv", Owner: &results.Owner{UID: 1001}, Outputs: map[string]string{"out": store + "aaaa-a"}}, true},
		{"another's result in the cache: only logged", &access.Viewer{UID: 1000}, results.Record{Drv: "a.drv", Owner: &results.Owner{UID: 1001}, Outputs: map[string]string{"out": "/cache/a"}}, false},
	} {
		core, logged := observer.New(zapcore.WarnLevel)
		before := []error{errors.New("earlier")}
		failure := errors.New("settling failed")
		errs := reportTo(c.v, &c.r, slices.Clone(before), failure, zap.New(core))
		reported := len(errs) == 2 && errs[1] == failure
		if reported != c.reported || (!reported && len(errs) != 1) {
			t.Errorf("%s: errors %v, want reported %v", c.name, errs, c.reported)
		}
		if wantLogged := !c.reported; (logged.Len() == 1) != wantLogged {
			t.Errorf("%s: logged %d entries, want logged %v", c.name, logged.Len(), wantLogged)
		}
	}
}

// The entries in which two layers differ: contents or only one has it.
func TestDifferingEntries(t *testing.T) {
	for _, c := range []struct {
		name   string
		a, b   map[string]string
		differ []string
	}{
		{"equal", map[string]string{"x": "0 644 h1", "y": "0 644 h2"}, map[string]string{"x": "0 644 h1", "y": "0 644 h2"}, nil},
		{"a digest differs", map[string]string{"x": "0 644 h1", "y": "0 644 h2"}, map[string]string{"x": "0 644 h1", "y": "0 755 h2"}, []string{"y"}},
		{"only one has it, either side, sorted", map[string]string{"z": "0 644 h1", "x": "0 644 h1"}, map[string]string{"x": "0 644 h1", "a": "0 644 h3"}, []string{"a", "z"}},
		{"both empty", nil, nil, nil},
	} {
		if got := differingEntries(c.a, c.b); !slices.Equal(got, c.differ) {
			t.Errorf("%s: %v, want %v", c.name, got, c.differ)
		}
	}
}

package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/poll"
	"github.com/nixlayer/nixlayer/runner"
)

// Exit codes Nix understands from a hook (derivation-goal.cc): 100 is a
// build failure, 101 a timeout, anything else a hook failure.
const (
	exitFailed   = 100
	exitTimedOut = 101
)

var (
	errTimeout = errors.New("timeout")
	errSilent  = errors.New("max-silent-time")
)

// build runs an accepted derivation: it reads the rest of Nix's request,
// builds layer by layer with the build log on fd 4, and registers the
// outputs while Nix holds their locks.
func (s *session) build(ctx context.Context, req *Request) int {
	logw := &activityWriter{w: io.Discard, last: time.Now()}
	if s.cfg.BuildLog != nil {
		logw.w = s.cfg.BuildLog
	}
	say := func(format string, args ...any) { fmt.Fprintf(logw, "nixlayer: "+format+"\n", args...) }
	inputs, err := ReadStrings(s.in)
	if err == nil {
		_, err = ReadStrings(s.in) // missing outputs: names (Nix ≥ 2.4); the runner delivers all invalid outputs
	}
	if err != nil {
		say("reading the inputs of %s from Nix: %v", req.DrvPath, err)
		return 1
	}
	s.log.Debug("accepted", zap.String("drv", req.DrvPath), zap.Int("inputs", len(inputs)))

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if t := seconds(s.settings, "timeout", "build-timeout"); t > 0 {
		tctx, tcancel := context.WithTimeoutCause(ctx, time.Duration(t)*time.Second, errTimeout)
		defer tcancel()
		ctx = tctx
	}
	if quiet := seconds(s.settings, "max-silent-time", "build-max-silent-time"); quiet > 0 {
		go watchSilence(ctx, logw, time.Duration(quiet)*time.Second, cancel)
	}

	nl := &nixLog{stderr: s.reply, build: logw}
	nl.start(uint64(os.Getpid())<<32|1, "nixlayer: layered build of "+buildindex.DrvName(req.DrvPath))
	defer nl.stop()
	_ = buildindex.RecordStart(s.cfg.CacheDir, req.DrvPath, buildindex.ByNixlayer)
	t0 := time.Now()

	// Exact, and never slower than Nix: an inexact resume is never
	// registered (the build reruns the phases with the real output paths
	// instead), and without a path map it builds fully when learning would
	// take longer. What learning the build leaves goes on in the
	// background (the engine's policy).
	res, err := s.local.BuildForNix(ctx, req.DrvPath, api.Output{Log: logw, Progress: progress(say, nl)})
	if err == nil && !res.InStore {
		err = fmt.Errorf("the outputs of %s were not registered in the store (%s; hook mode must run as root)", req.DrvPath, notRegisteredWhy(res))
	}
	code := 0
	switch cause := context.Cause(ctx); {
	case err == nil:
		say("built %s in %s (ran: %s; reused: %s)", buildindex.DrvName(req.DrvPath), time.Since(t0).Round(time.Millisecond), list(res.Ran), list(res.Reused))
	case errors.Is(cause, errTimeout):
		say("building of '%s' timed out after %d seconds", req.DrvPath, seconds(s.settings, "timeout", "build-timeout"))
		code = exitTimedOut
	case errors.Is(cause, errSilent):
		say("building of '%s' timed out after %d seconds of silence", req.DrvPath, seconds(s.settings, "max-silent-time", "build-max-silent-time"))
		code = exitTimedOut
	default:
		var pe *runner.PhaseError
		if errors.As(err, &pe) {
			say("%s failed in %s with exit code %d; inspect it with: nixlayer shell --at failed %s", pe.Name, pe.Phase, pe.Exit, req.DrvPath)
			code = exitFailed
		} else {
			say("error: %v", err)
			code = 1
		}
	}
	if code == 0 {
		_ = buildindex.MarkHookBuilt(s.cfg.CacheDir, req.DrvPath)
		_ = buildindex.RecordEnd(s.cfg.CacheDir, req.DrvPath, buildindex.ByNixlayer, buildindex.EventEnd, nil, strings.Join(res.Ran, " "))
	} else {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		_ = buildindex.RecordEnd(s.cfg.CacheDir, req.DrvPath, buildindex.ByNixlayer, buildindex.EventFailed, nil, msg)
	}
	return code
}

func notRegisteredWhy(res *runner.Result) string {
	if why := res.WhyNotVerified(); why != "" {
		return why
	}
	return "verified, but the store was not writable"
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, " ")
}

// progress turns runner events into build-log lines (the renderer the CLI
// uses) and tells Nix which phase runs.
func progress(say func(string, ...any), nl *nixLog) func(events.Event) {
	return func(ev events.Event) {
		if ev.Kind == events.EventStart {
			nl.phase(ev.Phase)
		}
		if text := ev.Text(); text != "" {
			say("%s", text)
		}
	}
}

// activityWriter is the build log: it serialises writes and remembers when
// the build last said something (for max-silent-time).
type activityWriter struct {
	mu   sync.Mutex
	w    io.Writer
	last time.Time
}

func (a *activityWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = time.Now()
	n, err := a.w.Write(p)
	if err != nil {
		// Nix closed the log: keep building, the result still counts.
		a.w = io.Discard
		return len(p), nil
	}
	return n, nil
}

func (a *activityWriter) idle() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Since(a.last)
}

// watchSilence cancels the build when the log stays silent too long, as
// Nix does for its own builds (it does not for hook builds).
func watchSilence(ctx context.Context, a *activityWriter, limit time.Duration, cancel context.CancelCauseFunc) {
	poll.Every(ctx, min(limit/4+time.Millisecond, time.Second), func() bool {
		if a.idle() > limit {
			cancel(errSilent)
			return true
		}
		return false
	})
}

package hook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/runner"
)

// Machine is the name Nix shows in "building '…' on 'MACHINE'".
const Machine = "nixlayer"

// Config is what Nix gives a hook process.
type Config struct {
	Stdin io.Reader // requests from Nix
	Reply io.Writer // stderr: answers, @nix messages
	// BuildLog is fd 4, where the build's log goes; BuildLogRead is fd 5,
	// its read side (only passed on to Nix's own hook).
	BuildLog, BuildLogRead *os.File
	Verbosity              string // the argument Nix appends, e.g. "3"
	CacheDir               string
	NixPID                 int // the Nix process that started us (max-jobs slots are per Nix process)
	Logger                 *zap.Logger
	// NixHook is Nix's own build hook (see NixHookCommand).
	NixHook []string
}

// session is one hook process: a conversation of try requests ending in
// an accepted build or in Nix closing our stdin.
type session struct {
	cfg      Config
	in       *bufio.Reader
	reply    io.Writer // serialised: progress and answers come from several goroutines
	settings map[string]string
	fwd      *forwarder
	local    *api.Local
	slot     *os.File
	cacheErr error // set once the cache turned out unusable
	notReady error // set once the machine turned out unable to layer builds
	log      *zap.Logger
}

// Serve speaks the build-hook protocol until Nix is done with this process
// and returns the exit code: for an accepted build, 0 when its outputs are
// valid in the store, 100 when the builder failed, 101 on timeout.
//
// Nix fails the whole nix-build when a hook exits before answering, so
// every problem while deciding becomes a decline with a message, never an
// early exit.
func Serve(ctx context.Context, cfg Config) int {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = runner.DefaultCacheDir()
	}
	if cfg.NixPID == 0 {
		cfg.NixPID = os.Getppid()
	}
	s := &session{cfg: cfg, in: bufio.NewReaderSize(cfg.Stdin, 64<<10), reply: zapcore.Lock(zapcore.AddSync(cfg.Reply)), log: cfg.Logger}
	defer s.close()
	var err error
	s.settings, err = ReadSettings(s.in)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0 // Nix went away before asking anything
		}
		s.say("nixlayer: build hook: unreadable settings from Nix (%v); declining", err)
		s.answer(Decline)
		return 1
	}
	for {
		req, err := ReadRequest(s.in)
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, ErrNotTry):
			return 0
		case err != nil:
			// Nix may be waiting for an answer: decline, then stop, as
			// the stream cannot be trusted any more.
			s.say("nixlayer: build hook: unreadable request from Nix (%v); declining", err)
			s.answer(Decline)
			return 1
		}
		d := s.decide(req)
		switch d.Verdict {
		case Accept:
			s.answer(Accept)
			fmt.Fprintln(s.reply, Machine)
			return s.build(ctx, req)
		case Postpone:
			s.verbose("nixlayer: postponing %s: %s", req.DrvPath, d.Why)
			s.answer(Postpone)
			continue
		}
		s.verbose("nixlayer: declining %s: %s", req.DrvPath, d.Why)
		v, asked, err := s.forward(req)
		if err != nil {
			s.say("nixlayer: %v", err)
		}
		if asked {
			s.verbose("nixlayer: Nix's build hook answered %s for %s", v, req.DrvPath)
		}
		s.answer(v)
		if v == Accept {
			return s.fwd.handOver(ctx, s.in)
		}
	}
}

// decide adds the machine-wide checks to Decide: the escape hatch, the
// cache, max-jobs.
func (s *session) decide(req *Request) Decision {
	if v := os.Getenv("NIXLAYER_HOOK"); v == "off" || v == "0" {
		return Decision{Decline, "NIXLAYER_HOOK=" + v}
	}
	d := Decide(req, s.settings)
	if d.Verdict != Accept {
		return d
	}
	jobs := maxJobs(s.settings)
	if jobs == 0 {
		return Decision{Decline, "max-jobs is 0: no local builds"}
	}
	if !req.AmWilling {
		return Decision{Postpone, "no free build slot (max-jobs)"}
	}
	if err := s.preflight(); err != nil {
		return Decision{Decline, err.Error()}
	}
	if err := s.openCache(); err != nil {
		return Decision{Decline, err.Error()}
	}
	if s.slot == nil {
		f, err := takeSlot(filepath.Join(s.cfg.CacheDir, "hook", "slots"), s.cfg.NixPID, jobs)
		if err != nil {
			return Decision{Decline, err.Error()}
		}
		if f == nil {
			return Decision{Postpone, fmt.Sprintf("%d layered builds running (max-jobs)", jobs)}
		}
		s.slot = f
	}
	return d
}

// preflight checks once per hook process that layered builds can run
// here (runner.Preflight); if not, the hook declines everything and says
// why in Nix's log, once.
func (s *session) preflight() error {
	if s.notReady != nil || s.local != nil {
		return s.notReady
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := phaserun.Preflight(ctx, s.cfg.CacheDir); err != nil {
		s.notReady = fmt.Errorf("nixlayer cannot layer builds here: %v", err)
		s.say("nixlayer: declining: %v; Nix builds them itself", s.notReady)
	}
	return s.notReady
}

// openCache opens the runner's cache once; a cache that cannot be opened
// makes the hook decline everything (said once, loudly).
func (s *session) openCache() error {
	if s.local != nil {
		return nil
	}
	if s.cacheErr != nil {
		return s.cacheErr
	}
	l, err := api.OpenLocal(runner.Options{CacheDir: s.cfg.CacheDir, Cores: cores(s.settings), Logger: s.log})
	if err != nil {
		s.cacheErr = fmt.Errorf("nixlayer cache %s unusable: %v", s.cfg.CacheDir, err)
		s.say("nixlayer: %v; Nix builds everything itself (fix the cache or set NIXLAYER_CACHE)", s.cacheErr)
		return s.cacheErr
	}
	s.local = l
	return nil
}

// forward asks Nix's own hook about a declined derivation, when builders
// are configured (without them it would decline anyway).
func (s *session) forward(req *Request) (v Verdict, asked bool, err error) {
	if s.fwd == nil {
		if !haveBuilders(s.settings) || len(s.cfg.NixHook) == 0 {
			return Decline, false, nil
		}
		f, err := startForwarder(s.cfg.NixHook, s.cfg.Verbosity, s.settings, s.cfg.BuildLog, s.cfg.BuildLogRead, s.reply)
		if err != nil {
			s.cfg.NixHook = nil // do not try again in this process
			return Decline, false, err
		}
		s.fwd = f
	}
	if s.fwd.dead {
		return Decline, false, nil
	}
	v, err = s.fwd.ask(req)
	return v, true, err
}

func (s *session) answer(v Verdict) { fmt.Fprintf(s.reply, "# %s\n", v) }

// say shows a line to the user: before the answer Nix prints what the hook
// writes on stderr.
func (s *session) say(format string, args ...any) {
	fmt.Fprintf(s.reply, strings.TrimSuffix(format, "\n")+"\n", args...)
}

// verbose says a line when Nix runs with -v or more.
func (s *session) verbose(format string, args ...any) {
	if v, err := strconv.Atoi(s.cfg.Verbosity); err == nil && v >= 4 {
		s.say(format, args...)
	}
}

func (s *session) close() {
	if s.fwd != nil {
		s.fwd.close()
	}
	if s.local != nil {
		s.local.Close()
	}
	if s.slot != nil {
		s.slot.Close()
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/hook"
	"github.com/nixlayer/nixlayer/runner"
)

// cmdHook is hook mode: Nix 2.8 execs the build-hook with the verbosity as
// its only argument, newer Nix runs `nixlayer hook VERBOSITY`. stdout and
// stderr both go to Nix's reply pipe, so nothing else may print there.
func cmdHook(ctx context.Context, args []string) (code int) {
	verbosity := "3"
	if len(args) > 0 {
		verbosity = args[len(args)-1]
	}
	defer func() {
		// Nix fails the whole build if the hook dies before answering:
		// a crash becomes a decline (ignored if we had already accepted).
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "nixlayer: build hook internal error: %v\n# decline\n", r)
			code = 1
		}
	}()
	return hook.Serve(ctx, hook.Config{
		Stdin:        os.Stdin,
		Reply:        os.Stderr,
		BuildLog:     inheritedFile(4, "build-log"),
		BuildLogRead: inheritedFile(5, "build-log-read"),
		Verbosity:    verbosity,
		CacheDir:     runner.DefaultCacheDir(),
		Logger:       hookLogger(verbosity),
		NixHook:      hook.NixHookCommand(),
	})
}

// inheritedFile returns fd if the parent left it open.
func inheritedFile(fd int, name string) *os.File {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

// hookLogger logs warnings (debug from nix -vvv on) on stderr, where Nix
// shows them before the hook's answer.
func hookLogger(verbosity string) *zap.Logger {
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	if v, err := strconv.Atoi(verbosity); err == nil && v >= 6 {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	}
	cfg.DisableStacktrace = true
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// cmdPreBuildHook records the start of a build Nix runs itself. Nix runs it
// as `pre-build-hook DRV [SANDBOX]` and reads its stdout for sandbox
// settings, so it prints nothing there; and since a failing pre-build-hook
// fails the build, problems are only reported on stderr.
func cmdPreBuildHook(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "nixlayer pre-build-hook: expected the .drv path (set pre-build-hook in nix.conf; see nixlayer setup-nix)")
		return nil
	}
	if err := buildindex.RecordStart(runner.DefaultCacheDir(), args[0], buildindex.ByNix); err != nil {
		fmt.Fprintf(os.Stderr, "nixlayer pre-build-hook: %v\n", err)
	}
	return nil
}

// cmdPostBuildHook records the end of a build (Nix sets DRV_PATH and
// OUT_PATHS). Builds the hook made itself are already recorded.
func cmdPostBuildHook(ctx context.Context, args []string) error {
	drvPath := os.Getenv("DRV_PATH")
	if drvPath == "" {
		fmt.Fprintln(os.Stderr, "nixlayer post-build-hook: DRV_PATH is not set (run it as Nix's post-build-hook)")
		return nil
	}
	cache := runner.DefaultCacheDir()
	if buildindex.TakeHookBuilt(cache, drvPath) {
		return nil
	}
	if err := buildindex.RecordEnd(cache, drvPath, buildindex.ByNix, buildindex.EventEnd, strings.Fields(os.Getenv("OUT_PATHS")), ""); err != nil {
		fmt.Fprintf(os.Stderr, "nixlayer post-build-hook: %v\n", err)
	}
	return nil
}

// cmdSetupNix writes the nix.conf lines for hook mode.
func cmdSetupNix(ctx context.Context, args []string) error {
	given, err := commands.ParseFlags("setup-nix", args, map[string]string{"--conf": "/etc/nix/nix.conf", "--hooks-dir": "/usr/local/libexec/nixlayer"})
	if err != nil {
		return err
	}
	conf, bin, hooksDir := given["--conf"], given["--bin"], given["--hooks-dir"]
	printOnly, noRecord := given["--print"] == "true", given["--no-record"] == "true"
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary: %w (pass --bin PATH)", err)
		}
		bin = exe
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	s := hook.Setup{Binary: abs, HooksDir: hooksDir, ConfFile: conf, WithRecord: !noRecord}

	v, verr := hook.InstalledNix(ctx)
	if verr != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", verr)
	} else {
		fmt.Fprintf(os.Stderr, "Nix: %s\n", v)
		for _, n := range hook.VersionNotes(v) {
			fmt.Fprintln(os.Stderr, n)
		}
	}
	if printOnly {
		fmt.Println(strings.Join(s.ConfLines(), "\n"))
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("setup-nix edits the system nix.conf and hook mode delivers into the store: run it as root (or use --print)")
	}
	conflicts, err := s.Conflicts()
	if err != nil {
		return err
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("%s already sets %s; remove those lines (nixlayer forwards what it declines to Nix's own build hook) or use --print / --no-record", conf, strings.Join(conflicts, "; "))
	}
	if s.WithRecord {
		if err := s.WriteWrappers(); err != nil {
			return err
		}
	}
	changed, err := s.Apply()
	if err != nil {
		return err
	}
	if changed {
		fmt.Fprintf(os.Stderr, "wrote to %s:\n  %s\n", conf, strings.Join(s.ConfLines(), "\n  "))
	} else {
		fmt.Fprintf(os.Stderr, "%s already has the nixlayer lines\n", conf)
	}
	fmt.Fprintf(os.Stderr, "Layer cache of the hook: %s. Try it: nix-build '<your package>' and look for \"on '%s'\".\n", runner.DefaultCacheDir(), hook.Machine)
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/daemon"
	"github.com/nixlayer/nixlayer/lsp"
	"github.com/nixlayer/nixlayer/runner"
)

// lspAbout is the help's paragraph on nixlayer lsp.
const lspAbout = `Speaks the Language Server Protocol on stdin/stdout for .nix files: code
lenses and hovers with each phase's cache status (live while a build runs),
the commands nixlayer.build, nixlayer.rebuildFrom, nixlayer.openShell,
nixlayer.showLog, nixlayer.browse, nixlayer.diff, nixlayer.cancel, and
requests that read a phase's tree. Logs go to stderr. See docs/editors.md.`

// cmdLSP runs the language server on stdio.
func cmdLSP(ctx context.Context, args []string) error {
	opts := lsp.Options{}
	verbose := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--stdio":
		case "-v", "--verbose":
			verbose = true
		case "--cache", "--debounce", "--lens-refresh":
			if i+1 >= len(args) {
				return cmdline.UsageError{Msg: fmt.Sprintf("%s needs a value (nixlayer lsp --help)", a)}
			}
			i++
			if a == "--cache" {
				opts.CacheDir = args[i]
				continue
			}
			d, err := time.ParseDuration(args[i])
			if err != nil {
				return fmt.Errorf("%s: %w", a, err)
			}
			if a == "--debounce" {
				opts.Debounce = d
			} else if opts.LensRefresh = d; d <= 0 {
				opts.LensRefresh = -1
			}
		default:
			return cmdline.UsageError{Msg: fmt.Sprintf("unknown argument %q (nixlayer lsp --help)", a)}
		}
	}
	cfg := zap.NewProductionConfig() // JSON on stderr: stdout is the LSP stream
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	cfg.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	if verbose {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer log.Sync()
	opts.Logger = log
	// The engine: in this process for root, nixlayer daemon for others.
	opts.Connect = func() (api.Service, error) {
		if os.Geteuid() == 0 {
			return api.OpenLocal(runner.Options{CacheDir: opts.CacheDir, Logger: log})
		}
		return daemon.Dial(ctx, daemon.SocketPath())
	}
	return lsp.Serve(ctx, stdio{}, opts)
}

// stdio is the server's end of the pipe: stdin and stdout.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error {
	os.Stdin.Close()
	return os.Stdout.Close()
}

var _ io.ReadWriteCloser = stdio{}

package main

import (
	"context"
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nixlayer/nixlayer/daemon"
)

// nixlayer daemon [--socket PATH] [--cache DIR] [--results DIR] [-v]
//
// The root service other users' CLI and language server talk to (see
// package daemon); systemd starts it from nixlayer-daemon.socket, or run
// it by hand.
func cmdDaemon(ctx context.Context, args []string) error {
	v, err := commands.ParseFlags("daemon", args, map[string]string{"--socket": daemon.SocketPath()})
	if err != nil {
		return err
	}
	socket, cache, results, verbose := v["--socket"], v["--cache"], v["--results"], v["-v"] == "true"
	cfg := zap.NewProductionConfig() // JSON on stderr (the journal)
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	if verbose {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return err
	}
	defer log.Sync()
	srv, err := daemon.New(daemon.Options{CacheDir: cache, ResultsDir: results, Socket: socket, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := daemon.Listen(socket)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "nixlayer daemon: listening on %s\n", ln.Addr())
	return srv.Serve(ctx, ln)
}

package main

import (
	"context"
	"flag"
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
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	socket := fs.String("socket", daemon.SocketPath(), "Unix socket to listen on (systemd's, when socket-activated)")
	cache := fs.String("cache", "", "the shared layer cache (default: root's, the one the Nix hook uses)")
	results := fs.String("results", "", "where each user's results outside the store go (default: <cache>-results)")
	verbose := fs.Bool("v", false, "debug log")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := zap.NewProductionConfig() // JSON on stderr (the journal)
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	if *verbose {
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return err
	}
	defer log.Sync()
	srv, err := daemon.New(daemon.Options{CacheDir: *cache, ResultsDir: *results, Socket: *socket, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := daemon.Listen(*socket)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "nixlayer daemon: listening on %s\n", ln.Addr())
	return srv.Serve(ctx, ln)
}

// nixlayer status [--json]: where the engine runs, its cache, whether it
// can build here, and what the caller may do.
func cmdStatus(ctx context.Context, args []string) error {
	c, pos, _, err := inspectArgs(args, nil, nil)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("usage: nixlayer status [--json]")
	}
	svc, err := c.service(ctx)
	if err != nil {
		return err
	}
	defer svc.Close()
	st, err := svc.Status(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(st)
	}
	where := "in this process (root)"
	if st.Engine == "daemon" {
		where = "nixlayer daemon at " + st.Socket
	}
	fmt.Printf("engine:   %s\n", where)
	fmt.Printf("cache:    %s (%s, %d layers)\n", st.CacheDir, st.Driver, st.Layers)
	trust := "may build, plan, learn, verify, inspect, open shells, export, and pull from the layer caches"
	if st.Trusted {
		trust += "; trusted: may also gc, import, push, pull from any registry, --no-check-sigs, --insecure"
	}
	fmt.Printf("user:     %s (uid %d): %s\n", st.User, st.UID, trust)
	fmt.Printf("results:  %s (results that stay outside the Nix store)\n", st.ResultsDir)
	if st.NotReady != "" {
		fmt.Printf("builds:   CANNOT RUN HERE: %s\n", st.NotReady)
	} else {
		fmt.Printf("builds:   can run here (bubblewrap, cache, disk space)\n")
	}
	return nil
}

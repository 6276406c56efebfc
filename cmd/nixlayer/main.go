// Command nixlayer builds Nix stdenv derivations phase by phase on
// copy-on-write layers and resumes rebuilds from the first changed phase.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.podman.io/storage/pkg/reexec"

	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
)

func main() {
	if reexec.Init() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func isNumber(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, commands.Usage())
		return cmdline.ExitUsage
	}
	// Nix 2.8 execs build-hook with the verbosity as its only argument.
	if len(args) == 1 && isNumber(args[0]) {
		return cmdHook(ctx, args)
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help":
		name = "help"
	case "--version", "-V":
		name = "version"
	}
	cmd := commands.Find(name)
	if cmd == nil {
		fmt.Fprintf(os.Stderr, "nixlayer: unknown command %q\n\n%s", name, commands.Usage())
		return cmdline.ExitUsage
	}
	if cmd.WantsHelp(rest) {
		cmd.PrintHelp(os.Stdout)
		return cmdline.ExitOK
	}
	err := cmd.Run(ctx, rest)
	var code cmdline.ExitCodeError
	if err != nil && !errors.As(err, &code) {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
	}
	return cmdline.CodeOf(err)
}

// Command nixlayer builds Nix stdenv derivations phase by phase on
// copy-on-write layers and resumes rebuilds from the first changed phase.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.podman.io/storage/pkg/reexec"
)

const usage = `usage: nixlayer COMMAND [ARGS]

Commands:
  build   build a derivation layer by layer (like nix-build)
  plan    show which phases are cached and why the others must run
  verify  build cleanly with Nix and compare with the layered result, file by file
  learn   learn which bytes of a cached chain depend on the output path, then
          verify the results waiting for it (runs in the background after builds)
  shell   open a shell in the sandbox with the state after a phase (--at PHASE|failed)
  mount   mount a phase's tree on the host; umount undoes it
  ls      list cached derivations and layers; log shows a phase's log
  status  where the engine runs (this process or nixlayer daemon), its cache, your
          rights; each result's state: provisional, verifying, verified, replaced
  gc      remove layers by policy; export/import a layer chain as an OCI layout
  push    push a package's chain to an OCI registry (REGISTRY/REPO[:TAG]), signed
  pull    pull the layers a package misses from an OCI registry
  hook    Nix build-hook mode (see setup-nix); pre-build-hook, post-build-hook
  lsp     language server for .nix files (stdio)
  daemon  the root service other users' nixlayer talks to (see README)
  help    show this text

A package is named like nix-build does: [FILE] [-A ATTR] [--arg N V]
[--argstr N V], -E EXPR, or a .drv path.
Common flags: --cache DIR (root only; default /var/cache/nixlayer,
$NIXLAYER_CACHE), -v (debug log on stderr), --no-check-sigs (use pulled
chains no trusted key signed, marked not verified), --insecure (plain HTTP
to registries). Other users work through nixlayer daemon
($NIXLAYER_DAEMON_SOCKET, default /run/nixlayer/daemon.sock).
Layer caches: <cache>/config.json layerCaches, pushTo, trustedLayerKeys,
secretKeyFile, insecureRegistries, registryTimeout (see README).
Environment settings (NIXLAYER_*): docs/environment.md.
`

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
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	// Nix 2.8 execs build-hook with the verbosity as its only argument.
	if len(args) == 1 && isNumber(args[0]) {
		return cmdHook(ctx, args)
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "build":
		err = cmdBuild(ctx, rest)
	case "plan":
		err = cmdPlan(ctx, rest)
	case "learn":
		err = cmdLearn(ctx, rest)
	case "verify":
		err = cmdVerify(ctx, rest)
	case "status":
		err = cmdStatus(ctx, rest)
	case "hook":
		return cmdHook(ctx, rest)
	case "pre-build-hook":
		err = cmdPreBuildHook(ctx, rest)
	case "post-build-hook":
		err = cmdPostBuildHook(ctx, rest)
	case "setup-nix":
		err = cmdSetupNix(ctx, rest)
	case "lsp":
		err = cmdLSP(ctx, rest)
	case "daemon":
		err = cmdDaemon(ctx, rest)
	case "shell":
		err = cmdShell(ctx, rest)
	case "mount":
		err = cmdMount(ctx, rest)
	case "umount":
		err = cmdUmount(ctx, rest)
	case "ls":
		err = cmdLs(ctx, rest)
	case "log":
		err = cmdLog(ctx, rest)
	case "gc":
		err = cmdGC(ctx, rest)
	case "export":
		err = cmdExport(ctx, rest)
	case "import":
		err = cmdImport(ctx, rest)
	case "push":
		err = cmdPush(ctx, rest)
	case "pull":
		err = cmdPull(ctx, rest)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "nixlayer: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/completion"
)

// commands is the one table of nixlayer's commands (filled in init: their
// run functions read it for their flags): the parser, every command's
// --help and the completion scripts read it (package cmdline).
var commands cmdline.Table

var (
	atFlag      = cmdline.FlagSpec{Names: []string{"--at"}, Arg: "PHASE", Help: "the phase whose layer to use (a phase name, its short name, failed, or a layer id)", Complete: cmdline.CompletePhase}
	signKeyFlag = cmdline.FlagSpec{Names: []string{"--sign-key"}, Arg: "FILE", Help: "sign with this secret key (default: secretKeyFile in the cache's config.json)", Complete: cmdline.CompleteFile}
	tagFlag     = cmdline.FlagSpec{Names: []string{"--tag"}, Arg: "REF", Help: "the image's tag in the layout"}
	cacheFlag   = cmdline.FlagSpec{Names: []string{"--cache"}, Arg: "DIR", Help: "the layer cache (root only)", Complete: cmdline.CompleteDir}
	jsonFlag    = cmdline.FlagSpec{Names: []string{"--json"}, Help: "print the result as JSON"}
	progressArg = cmdline.FlagSpec{Names: []string{"--progress"}, Arg: "FORMAT", Help: "progress as text (default) or json (one event per line, for programs)", Choices: []string{"text", "json"}}
)

func init() {
	commands = cmdline.Table{
		{Name: "build", Args: "[PACKAGE] [FLAGS]", Pkg: true, Run: cmdBuild,
			Summary: "build a derivation layer by layer (like nix-build, nix build)",
			About: "Builds the package phase by phase, each phase's result a copy-on-write layer, and resumes a rebuild from the first phase whose inputs changed. " +
				"The outputs go into the Nix store when they are what Nix would build (at once, or after the background verification), " +
				"and ./result links to them (result-dev, result-man, … for the other outputs), as nix-build and nix build name them.",
			Flags: []cmdline.FlagSpec{
				{Names: []string{"--exact"}, Help: "never deliver a provisional result: wait for the path map, or rebuild what cannot be rewritten exactly"},
				{Names: []string{"--no-learn"}, Help: "do not start learning the path map in the background after the build"},
				progressArg,
			},
			Examples: []string{
				"nixlayer build .#hello                  # a flake's package, as nix build .#hello",
				"nixlayer build -f . -A hello            # a nixpkgs checkout, as nix-build -A hello",
				"nixlayer build ./hello.nix --argstr version 2",
				"nixlayer build .#hello --from installPhase",
			}},
		{Name: "plan", Args: "[PACKAGE] [FLAGS]", Pkg: true, Run: cmdPlan,
			Summary: "show which phases are cached and why the others must run",
			About:   "Prints every phase of the package: cached (with its layer), or to run and why (the first attribute or input that changed). Builds nothing.",
			Examples: []string{
				"nixlayer plan .#hello",
				"nixlayer plan --json -f . -A hello",
			}},
		{Name: "verify", Args: "[PACKAGE] [FLAGS]", Pkg: true, Run: cmdVerify,
			Summary:  "build cleanly with Nix and compare with the layered result, file by file",
			About:    "Builds the package with Nix itself and compares its outputs with the layered result; exits 1 when they differ, listing every file.",
			Examples: []string{"nixlayer verify .#hello"}},
		{Name: "learn", Args: "[PACKAGE] [FLAGS]", Pkg: true, Run: cmdLearn,
			Summary: "learn which bytes of a cached chain depend on the output path",
			About:   "Builds the cached phases a second time at another output path to learn the path map, then verifies the results waiting for it. Runs in the background after builds; run it by hand to wait for it.",
			Flags:   []cmdline.FlagSpec{progressArg},
			Examples: []string{
				"nixlayer learn .#hello",
			}},
		{Name: "shell", Args: "[PACKAGE] --at PHASE|failed [FLAGS]", Pkg: true, Run: cmdShell,
			Summary: "open a shell in the sandbox with the state after a phase",
			About:   "Opens an interactive shell in the build sandbox with the tree and the shell state (variables, functions) after the phase, or where a failed build stopped.",
			Flags: []cmdline.FlagSpec{
				atFlag,
				{Names: []string{"--keep"}, Help: "keep the shell's changes as a layer"},
			},
			Examples: []string{
				"nixlayer shell .#hello --at buildPhase",
				"nixlayer shell .#hello --at failed",
			}},
		{Name: "mount", Args: "[PACKAGE] PHASE [DIR]", Pkg: true, Run: cmdMount,
			Summary:  "mount a phase's tree on the host (read-only; root); umount undoes it",
			About:    "Mounts the tree after the phase read-only on the host and prints the directory; without PHASE, lists the mounts.",
			Flags:    []cmdline.FlagSpec{atFlag},
			Examples: []string{"nixlayer mount .#hello buildPhase /mnt/hello"}},
		{Name: "umount", Args: "DIR | [PACKAGE] PHASE | --all", Pkg: true, Run: cmdUmount,
			Summary:  "release a mount made by nixlayer mount",
			Flags:    []cmdline.FlagSpec{{Names: []string{"--all"}, Help: "release every mount"}},
			Examples: []string{"nixlayer umount /mnt/hello", "nixlayer umount --all"}},
		{Name: "ls", Args: "[PACKAGE | NAME] [FLAGS]", Pkg: true, Run: cmdLs,
			Summary: "list cached derivations and layers, and the builds Nix ran",
			Flags:   []cmdline.FlagSpec{{Names: []string{"--builds"}, Help: "with --json: also the builds of the build index"}},
			Examples: []string{
				"nixlayer ls",
				"nixlayer ls .#hello",
			}},
		{Name: "log", Args: "PACKAGE | NAME [PHASE]", Pkg: true, Run: cmdLog,
			Summary:  "show a phase's build log",
			Examples: []string{"nixlayer log .#hello installPhase"}},
		{Name: "status", Args: "[PACKAGE | NAME] [FLAGS]", Pkg: true, Run: cmdStatus,
			Summary: "where the engine runs, its cache, your rights; each result's state",
			About:   "Says where the engine runs (this process or nixlayer daemon), its cache and your rights, and each result's state: provisional, verifying, verified, replaced or unverified, with why."},
		{Name: "gc", Args: "[FLAGS]", Run: cmdGC,
			Summary: "remove layers by policy",
			Flags: []cmdline.FlagSpec{
				{Names: []string{"--keep-last"}, Arg: "N", Help: "keep the last N versions of each package"},
				{Names: []string{"--max-size"}, Arg: "SIZE", Help: "remove the oldest layers until the cache is under SIZE (10G, 500M)"},
				{Names: []string{"--older-than"}, Arg: "AGE", Help: "remove layers unused for AGE (30d, 12h)"},
				{Names: []string{"--dry-run"}, Help: "only say what would be removed"},
				cacheFlag, jsonFlag,
			},
			Examples: []string{"nixlayer gc --keep-last 2 --dry-run"}},
		{Name: "export", Args: "PACKAGE DIR [FLAGS]", Pkg: true, Run: cmdExport,
			Summary:  "export a package's layer chain as an OCI layout",
			Flags:    []cmdline.FlagSpec{atFlag, tagFlag, signKeyFlag},
			Examples: []string{"nixlayer export .#hello ./oci --at buildPhase"}},
		{Name: "import", Args: "DIR [FLAGS]", Run: cmdImport,
			Summary: "import a layer chain from an OCI layout",
			Flags: []cmdline.FlagSpec{tagFlag, cacheFlag, jsonFlag,
				{Names: []string{"--no-check-sigs"}, Help: "accept chains no trusted key signed (marked not verified)"},
			},
			Examples: []string{"nixlayer import ./oci --tag hello"}},
		{Name: "push", Args: "REGISTRY/REPO[:TAG] [PACKAGE] [FLAGS]", Pkg: true, Run: cmdPush,
			Summary:  "push a package's chain to an OCI registry, signed",
			Flags:    []cmdline.FlagSpec{atFlag, signKeyFlag},
			Examples: []string{"nixlayer push registry.example.org/layers .#hello"}},
		{Name: "pull", Args: "REGISTRY/REPO[:TAG] [PACKAGE] [FLAGS]", Pkg: true, Run: cmdPull,
			Summary:  "pull the layers a package misses from an OCI registry",
			Examples: []string{"nixlayer pull registry.example.org/layers .#hello"}},
		{Name: "hook", Args: "", Run: func(ctx context.Context, args []string) error { return cmdline.ExitCode(cmdHook(ctx, args)) },
			Summary: "Nix build-hook mode (see setup-nix)",
			About:   "Nix runs it as its build-hook (nix.conf, written by nixlayer setup-nix): it accepts the stdenv builds it can layer and forwards the others to Nix. Not for interactive use."},
		{Name: "setup-nix", Args: "[FLAGS]", Run: cmdSetupNix,
			Summary: "write the nix.conf lines for hook mode (build-hook, pre/post-build-hook)",
			Flags: []cmdline.FlagSpec{
				{Names: []string{"--conf"}, Arg: "FILE", Help: "nix.conf to edit (default /etc/nix/nix.conf)", Complete: cmdline.CompleteFile},
				{Names: []string{"--bin"}, Arg: "PATH", Help: "the nixlayer binary Nix should run (default: this one)", Complete: cmdline.CompleteFile},
				{Names: []string{"--hooks-dir"}, Arg: "DIR", Help: "where to write the pre/post-build-hook wrappers (default /usr/local/libexec/nixlayer)", Complete: cmdline.CompleteDir},
				{Names: []string{"--print"}, Help: "only print the lines, change nothing"},
				{Names: []string{"--no-record"}, Help: "do not set pre-/post-build-hook (recording of builds Nix runs itself)"},
			},
			Examples: []string{"nixlayer setup-nix --print", "sudo nixlayer setup-nix && nix build .#hello"}},
		{Name: "pre-build-hook", Args: "DRV", Run: cmdPreBuildHook, Hidden: true,
			Summary: "Nix's pre-build-hook: records a build Nix starts itself"},
		{Name: "post-build-hook", Run: cmdPostBuildHook, Hidden: true,
			Summary: "Nix's post-build-hook: records a build Nix finished itself"},
		{Name: "lsp", Args: "[FLAGS]", Run: cmdLSP,
			Summary: "language server for .nix files (stdio)",
			About:   lspAbout,
			Flags: []cmdline.FlagSpec{
				{Names: []string{"--stdio"}, Help: "talk on stdin/stdout (the only transport; accepted for editors that pass it)"},
				cacheFlag,
				{Names: []string{"--debounce"}, Arg: "DURATION", Help: "wait this long after an edit before evaluating"},
				{Names: []string{"--lens-refresh"}, Arg: "DURATION", Help: "how often lenses are refreshed while a build runs (default 1s; 0 or less: only as phases end)"},
				{Names: []string{"-v", "--verbose"}, Help: "debug log on stderr"},
			}},
		{Name: "daemon", Args: "[FLAGS]", Run: cmdDaemon,
			Summary: "the root service other users' nixlayer talks to (see README)",
			Flags: []cmdline.FlagSpec{
				{Names: []string{"--socket"}, Arg: "PATH", Help: "Unix socket to listen on (systemd's, when socket-activated)", Complete: cmdline.CompleteFile},
				{Names: []string{"--cache"}, Arg: "DIR", Help: "the shared layer cache (default: root's, the one the Nix hook uses)", Complete: cmdline.CompleteDir},
				{Names: []string{"--results"}, Arg: "DIR", Help: "where each user's results outside the store go (default: <cache>-results)", Complete: cmdline.CompleteDir},
				{Names: []string{"-v"}, Help: "debug log"},
			}},
		{Name: "version", Run: cmdVersion,
			Summary: "print nixlayer's version and commit, and the Nix found"},
		{Name: "completion", Args: "bash|zsh|fish", Run: cmdCompletion,
			Summary: "print the shell completion script",
			About:   "Prints a completion script for bash, zsh or fish: commands, flags, phase names for --at and --from, and a flake's packages after #.",
			Examples: []string{
				"source <(nixlayer completion bash)               # in ~/.bashrc",
				"nixlayer completion zsh > \"${fpath[1]}/_nixlayer\"",
				"nixlayer completion fish > ~/.config/fish/completions/nixlayer.fish",
			}},
		{Name: completion.PackagesCommand, Args: "FLAKE#PREFIX", Run: cmdCompletePackages, Hidden: true,
			Summary: "the flake's packages starting with PREFIX (for the completion scripts)"},
		{Name: "help", Args: "[COMMAND]", Run: cmdHelp,
			Summary: "show this text, or a command's"},
	}
}

// cmdHelp prints the usage, or one command's help.
func cmdHelp(_ context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Print(commands.Usage())
		return nil
	}
	cmd := commands.Find(args[0])
	if cmd == nil {
		return cmdline.UsageError{Msg: fmt.Sprintf("nixlayer help: no command %q (nixlayer help lists them)", args[0])}
	}
	cmd.PrintHelp(os.Stdout)
	return nil
}

// cmdCompletion prints the completion script for a shell.
func cmdCompletion(_ context.Context, args []string) error {
	if len(args) != 1 {
		return cmdline.Usagef("nixlayer completion bash|zsh|fish")
	}
	if !completion.Write(os.Stdout, commands, args[0]) {
		return cmdline.UsageError{Msg: fmt.Sprintf("nixlayer completion: no script for the shell %q (bash, zsh or fish)", args[0])}
	}
	return nil
}

// cmdCompletePackages prints the packages a word being completed may
// name (completion.PrintPackages).
func cmdCompletePackages(ctx context.Context, args []string) error {
	return completion.PrintPackages(ctx, os.Stdout, args)
}

// parseCommand parses a package command's line with its own flags from
// the table.
func parseCommand(name string, args []string) (*common, error) {
	a, err := commands.Parse(name, args)
	if err != nil {
		return nil, err
	}
	return &common{a}, nil
}

// inspectCommand splits a package command's line into the package and
// its positional arguments (cmdline.Inspect), with its own flags from the
// table.
func inspectCommand(name string, args []string) (*common, []string, bool, error) {
	a, pos, hasPkg, err := commands.Inspect(name, args)
	if err != nil {
		return nil, nil, false, err
	}
	return &common{a}, pos, hasPkg, nil
}

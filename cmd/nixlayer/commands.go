package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// command is one of nixlayer's commands: what run dispatches, and what
// help and the completion scripts say of it. Its own flags are in flags;
// a command that names a package also takes commonFlags.
type command struct {
	name     string
	args     string // the synopsis after "nixlayer NAME"
	summary  string // one line for the command list
	about    string // help: what it does, a paragraph
	pkg      bool   // names a package: the common flags apply
	flags    []flagSpec
	examples []string
	run      func(context.Context, []string) error
	hidden   bool // Nix runs it (hook wrappers); not in the command list
}

// flagSpec is a flag as parsers, help and completion read it.
type flagSpec struct {
	names []string
	arg   string // its values' names ("NAME EXPR"); "" for a switch
	help  string
	// choices are the values it takes (completion; --flag=VALUE is
	// accepted as one word too); complete names a kind of value the
	// completion scripts offer: "phase", "file", "dir".
	choices  []string
	complete string
}

// values is how many arguments follow the flag.
func (f flagSpec) values() int { return len(strings.Fields(f.arg)) }

// commands is the one table of nixlayer's commands (filled in init: their
// run functions read it for their flags).
var commands []command

// Kinds of completion values.
const (
	completePhase   = "phase"
	completeFile    = "file"
	completeDir     = "dir"
	completePackage = "package"
)

var (
	atFlag      = flagSpec{names: []string{"--at"}, arg: "PHASE", help: "the phase whose layer to use (a phase name, its short name, failed, or a layer id)", complete: completePhase}
	signKeyFlag = flagSpec{names: []string{"--sign-key"}, arg: "FILE", help: "sign with this secret key (default: secretKeyFile in the cache's config.json)", complete: completeFile}
	tagFlag     = flagSpec{names: []string{"--tag"}, arg: "REF", help: "the image's tag in the layout"}
	cacheFlag   = flagSpec{names: []string{"--cache"}, arg: "DIR", help: "the layer cache (root only)", complete: completeDir}
	jsonFlag    = flagSpec{names: []string{"--json"}, help: "print the result as JSON"}
	progressArg = flagSpec{names: []string{"--progress"}, arg: "FORMAT", help: "progress as text (default) or json (one event per line, for programs)", choices: []string{"text", "json"}}
)

func init() {
	commands = []command{
		{name: "build", args: "[PACKAGE] [FLAGS]", pkg: true, run: cmdBuild,
			summary: "build a derivation layer by layer (like nix-build, nix build)",
			about: "Builds the package phase by phase, each phase's result a copy-on-write layer, and resumes a rebuild from the first phase whose inputs changed. " +
				"The outputs go into the Nix store when they are what Nix would build (at once, or after the background verification), " +
				"and ./result links to them (result-dev, result-man, … for the other outputs), as nix-build and nix build name them.",
			flags: []flagSpec{
				{names: []string{"--exact"}, help: "never deliver a provisional result: wait for the path map, or rebuild what cannot be rewritten exactly"},
				{names: []string{"--no-learn"}, help: "do not start learning the path map in the background after the build"},
				progressArg,
			},
			examples: []string{
				"nixlayer build .#hello                  # a flake's package, as nix build .#hello",
				"nixlayer build -f . -A hello            # a nixpkgs checkout, as nix-build -A hello",
				"nixlayer build ./hello.nix --argstr version 2",
				"nixlayer build .#hello --from installPhase",
			}},
		{name: "plan", args: "[PACKAGE] [FLAGS]", pkg: true, run: cmdPlan,
			summary: "show which phases are cached and why the others must run",
			about:   "Prints every phase of the package: cached (with its layer), or to run and why (the first attribute or input that changed). Builds nothing.",
			examples: []string{
				"nixlayer plan .#hello",
				"nixlayer plan --json -f . -A hello",
			}},
		{name: "verify", args: "[PACKAGE] [FLAGS]", pkg: true, run: cmdVerify,
			summary:  "build cleanly with Nix and compare with the layered result, file by file",
			about:    "Builds the package with Nix itself and compares its outputs with the layered result; exits 1 when they differ, listing every file.",
			examples: []string{"nixlayer verify .#hello"}},
		{name: "learn", args: "[PACKAGE] [FLAGS]", pkg: true, run: cmdLearn,
			summary: "learn which bytes of a cached chain depend on the output path",
			about:   "Builds the cached phases a second time at another output path to learn the path map, then verifies the results waiting for it. Runs in the background after builds; run it by hand to wait for it.",
			flags:   []flagSpec{progressArg},
			examples: []string{
				"nixlayer learn .#hello",
			}},
		{name: "shell", args: "[PACKAGE] --at PHASE|failed [FLAGS]", pkg: true, run: cmdShell,
			summary: "open a shell in the sandbox with the state after a phase",
			about:   "Opens an interactive shell in the build sandbox with the tree and the shell state (variables, functions) after the phase, or where a failed build stopped.",
			flags: []flagSpec{
				atFlag,
				{names: []string{"--keep"}, help: "keep the shell's changes as a layer"},
			},
			examples: []string{
				"nixlayer shell .#hello --at buildPhase",
				"nixlayer shell .#hello --at failed",
			}},
		{name: "mount", args: "[PACKAGE] PHASE [DIR]", pkg: true, run: cmdMount,
			summary:  "mount a phase's tree on the host (read-only; root); umount undoes it",
			about:    "Mounts the tree after the phase read-only on the host and prints the directory; without PHASE, lists the mounts.",
			flags:    []flagSpec{atFlag},
			examples: []string{"nixlayer mount .#hello buildPhase /mnt/hello"}},
		{name: "umount", args: "DIR | [PACKAGE] PHASE | --all", pkg: true, run: cmdUmount,
			summary:  "release a mount made by nixlayer mount",
			flags:    []flagSpec{{names: []string{"--all"}, help: "release every mount"}},
			examples: []string{"nixlayer umount /mnt/hello", "nixlayer umount --all"}},
		{name: "ls", args: "[PACKAGE | NAME] [FLAGS]", pkg: true, run: cmdLs,
			summary: "list cached derivations and layers, and the builds Nix ran",
			flags:   []flagSpec{{names: []string{"--builds"}, help: "with --json: also the builds of the build index"}},
			examples: []string{
				"nixlayer ls",
				"nixlayer ls .#hello",
			}},
		{name: "log", args: "PACKAGE | NAME [PHASE]", pkg: true, run: cmdLog,
			summary:  "show a phase's build log",
			examples: []string{"nixlayer log .#hello installPhase"}},
		{name: "status", args: "[PACKAGE | NAME] [FLAGS]", pkg: true, run: cmdStatus,
			summary: "where the engine runs, its cache, your rights; each result's state",
			about:   "Says where the engine runs (this process or nixlayer daemon), its cache and your rights, and each result's state: provisional, verifying, verified, replaced or unverified, with why."},
		{name: "gc", args: "[FLAGS]", run: cmdGC,
			summary: "remove layers by policy",
			flags: []flagSpec{
				{names: []string{"--keep-last"}, arg: "N", help: "keep the last N versions of each package"},
				{names: []string{"--max-size"}, arg: "SIZE", help: "remove the oldest layers until the cache is under SIZE (10G, 500M)"},
				{names: []string{"--older-than"}, arg: "AGE", help: "remove layers unused for AGE (30d, 12h)"},
				{names: []string{"--dry-run"}, help: "only say what would be removed"},
				cacheFlag, jsonFlag,
			},
			examples: []string{"nixlayer gc --keep-last 2 --dry-run"}},
		{name: "export", args: "PACKAGE DIR [FLAGS]", pkg: true, run: cmdExport,
			summary:  "export a package's layer chain as an OCI layout",
			flags:    []flagSpec{atFlag, tagFlag, signKeyFlag},
			examples: []string{"nixlayer export .#hello ./oci --at buildPhase"}},
		{name: "import", args: "DIR [FLAGS]", run: cmdImport,
			summary: "import a layer chain from an OCI layout",
			flags: []flagSpec{tagFlag, cacheFlag, jsonFlag,
				{names: []string{"--no-check-sigs"}, help: "accept chains no trusted key signed (marked not verified)"},
			},
			examples: []string{"nixlayer import ./oci --tag hello"}},
		{name: "push", args: "REGISTRY/REPO[:TAG] [PACKAGE] [FLAGS]", pkg: true, run: cmdPush,
			summary:  "push a package's chain to an OCI registry, signed",
			flags:    []flagSpec{atFlag, signKeyFlag},
			examples: []string{"nixlayer push registry.example.org/layers .#hello"}},
		{name: "pull", args: "REGISTRY/REPO[:TAG] [PACKAGE] [FLAGS]", pkg: true, run: cmdPull,
			summary:  "pull the layers a package misses from an OCI registry",
			examples: []string{"nixlayer pull registry.example.org/layers .#hello"}},
		{name: "hook", args: "", run: func(ctx context.Context, args []string) error { return exitCode(cmdHook(ctx, args)) },
			summary: "Nix build-hook mode (see setup-nix)",
			about:   "Nix runs it as its build-hook (nix.conf, written by nixlayer setup-nix): it accepts the stdenv builds it can layer and forwards the others to Nix. Not for interactive use."},
		{name: "setup-nix", args: "[FLAGS]", run: cmdSetupNix,
			summary: "write the nix.conf lines for hook mode (build-hook, pre/post-build-hook)",
			flags: []flagSpec{
				{names: []string{"--conf"}, arg: "FILE", help: "nix.conf to edit (default /etc/nix/nix.conf)", complete: completeFile},
				{names: []string{"--bin"}, arg: "PATH", help: "the nixlayer binary Nix should run (default: this one)", complete: completeFile},
				{names: []string{"--hooks-dir"}, arg: "DIR", help: "where to write the pre/post-build-hook wrappers (default /usr/local/libexec/nixlayer)", complete: completeDir},
				{names: []string{"--print"}, help: "only print the lines, change nothing"},
				{names: []string{"--no-record"}, help: "do not set pre-/post-build-hook (recording of builds Nix runs itself)"},
			},
			examples: []string{"nixlayer setup-nix --print", "sudo nixlayer setup-nix && nix build .#hello"}},
		{name: "pre-build-hook", args: "DRV", run: cmdPreBuildHook, hidden: true,
			summary: "Nix's pre-build-hook: records a build Nix starts itself"},
		{name: "post-build-hook", run: cmdPostBuildHook, hidden: true,
			summary: "Nix's post-build-hook: records a build Nix finished itself"},
		{name: "lsp", args: "[FLAGS]", run: cmdLSP,
			summary: "language server for .nix files (stdio)",
			about:   lspAbout,
			flags: []flagSpec{
				{names: []string{"--stdio"}, help: "talk on stdin/stdout (the only transport; accepted for editors that pass it)"},
				cacheFlag,
				{names: []string{"--debounce"}, arg: "DURATION", help: "wait this long after an edit before evaluating"},
				{names: []string{"--lens-refresh"}, arg: "DURATION", help: "how often lenses are refreshed while a build runs (default 1s; 0 or less: only as phases end)"},
				{names: []string{"-v", "--verbose"}, help: "debug log on stderr"},
			}},
		{name: "daemon", args: "[FLAGS]", run: cmdDaemon,
			summary: "the root service other users' nixlayer talks to (see README)",
			flags: []flagSpec{
				{names: []string{"--socket"}, arg: "PATH", help: "Unix socket to listen on (systemd's, when socket-activated)", complete: completeFile},
				{names: []string{"--cache"}, arg: "DIR", help: "the shared layer cache (default: root's, the one the Nix hook uses)", complete: completeDir},
				{names: []string{"--results"}, arg: "DIR", help: "where each user's results outside the store go (default: <cache>-results)", complete: completeDir},
				{names: []string{"-v"}, help: "debug log"},
			}},
		{name: "version", run: cmdVersion,
			summary: "print nixlayer's version and commit, and the Nix found"},
		{name: "completion", args: "bash|zsh|fish", run: cmdCompletion,
			summary: "print the shell completion script",
			about:   "Prints a completion script for bash, zsh or fish: commands, flags, phase names for --at and --from, and a flake's packages after #.",
			examples: []string{
				"source <(nixlayer completion bash)               # in ~/.bashrc",
				"nixlayer completion zsh > \"${fpath[1]}/_nixlayer\"",
				"nixlayer completion fish > ~/.config/fish/completions/nixlayer.fish",
			}},
		{name: completePackagesCommand, args: "FLAKE#PREFIX", run: cmdCompletePackages, hidden: true,
			summary: "the flake's packages starting with PREFIX (for the completion scripts)"},
		{name: "help", args: "[COMMAND]", run: cmdHelp,
			summary: "show this text, or a command's"},
	}
}

// findCommand is the command of that name (nil if none).
func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// ownFlags are the command's flags as parseArgs takes them: switches
// (with --flag=CHOICE for a value flag's choices) and value flags.
func ownFlags(name string) (switches, valued []string) {
	cmd := findCommand(name)
	if cmd == nil {
		panic("nixlayer: no command " + name)
	}
	for _, f := range cmd.flags {
		if f.values() == 0 {
			switches = append(switches, f.names...)
			continue
		}
		valued = append(valued, f.names...)
		for _, n := range f.names {
			for _, v := range f.choices {
				switches = append(switches, n+"="+v)
			}
		}
	}
	return switches, valued
}

// usageError is a command line nixlayer cannot read: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// usagef is a usageError "usage: …".
func usagef(format string, a ...any) error {
	return usageError{"usage: " + fmt.Sprintf(format, a...)}
}

// exitCodeError carries a command's own exit code (the hook's).
type exitCodeError int

func (e exitCodeError) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return exitCodeError(code)
}

// Exit codes, as help and the README document them.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const exitCodesHelp = `Exit codes: 0 success; 1 the command failed (evaluation, build, verification
differences, a refused request; the error says which); 2 the command line is
wrong (unknown command or flag, missing value); hook: Nix's build-hook
protocol decides.`

// codeOf is the exit code for a command's error.
func codeOf(err error) int {
	var u usageError
	var c exitCodeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &c):
		return int(c)
	case errors.As(err, &u):
		return exitUsage
	default:
		return exitError
	}
}

// wantsHelp reports whether -h or --help is one of the command's flags
// (not a flag's value).
func wantsHelp(cmd *command, args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" {
			return true
		}
		if n := flagValues(cmd, a); n > 0 {
			i += n
		}
	}
	return false
}

// flagValues is how many values follow flag a of cmd.
func flagValues(cmd *command, a string) int {
	if cmd.pkg {
		if f, ok := commonFlags[a]; ok {
			return f.values()
		}
	}
	for _, f := range cmd.flags {
		if slices.Contains(f.names, a) {
			return f.values()
		}
	}
	return 0
}

const packageHelp = `PACKAGE is named as nix build or nix-build names it:
  .#hello, ./dir#hello, path:/src#hello, github:OWNER/REPO#hello
                    a flake's package: packages.<system>.hello, else
                    legacyPackages.<system>.hello; no fragment: .default;
                    with --override-input INPUT REF and --impure
  [FILE] [-A ATTR] [--arg NAME EXPR] [--argstr NAME STRING]
                    a Nix file or directory (default ./default.nix; a
                    directory with only a flake.nix is that flake)
  -E EXPR           an expression
  /nix/store/…drv   a derivation`

// printCommandHelp writes cmd's help: synopsis, what it does, its flags,
// the package flags, examples.
func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: nixlayer %s %s\n\n", cmd.name, cmd.args)
	about := cmd.about
	if about == "" {
		about = strings.ToUpper(cmd.summary[:1]) + cmd.summary[1:] + "."
	}
	fmt.Fprintln(w, wrap(about, 78))
	if len(cmd.flags) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, cmd.flags)
	}
	if cmd.pkg {
		fmt.Fprintf(w, "\n%s\n\nPackage and common flags:\n", packageHelp)
		printFlags(w, commonFlagSpecs())
	}
	if len(cmd.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range cmd.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
}

func printFlags(w io.Writer, flags []flagSpec) {
	for _, f := range flags {
		left := "  " + strings.Join(f.names, ", ")
		if f.arg != "" {
			left += " " + f.arg
		}
		help := f.help
		if len(f.choices) > 0 {
			help += " (" + strings.Join(f.choices, ", ") + ")"
		}
		if len(left) > 26 {
			fmt.Fprintf(w, "%s\n%28s%s\n", left, "", indentWrap(help, 28, 78))
			continue
		}
		fmt.Fprintf(w, "%-28s%s\n", left, indentWrap(help, 28, 78))
	}
}

// wrap breaks text into lines of at most width.
func wrap(text string, width int) string { return indentWrap(text, 0, width) }

// indentWrap breaks text for a column starting at indent, continuation
// lines indented.
func indentWrap(text string, indent, width int) string {
	var b strings.Builder
	col := indent
	for i, word := range strings.Fields(text) {
		if i > 0 && col+1+len(word) > width {
			b.WriteString("\n" + strings.Repeat(" ", indent))
			col = indent
		} else if i > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}

// usageText is `nixlayer help`: the commands from the table, then how
// packages are named and the settings.
func usageText() string {
	var b strings.Builder
	b.WriteString("usage: nixlayer COMMAND [ARGS]   (nixlayer COMMAND --help for its flags)\n\nCommands:\n")
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
		}
	}
	b.WriteString("\n" + packageHelp + "\n")
	b.WriteString(`
Common flags: --cache DIR (root only; default /var/cache/nixlayer,
$NIXLAYER_CACHE), -v (debug log on stderr), --no-check-sigs (use pulled
chains no trusted key signed, marked not verified), --insecure (plain HTTP
to registries). Other users work through nixlayer daemon
($NIXLAYER_DAEMON_SOCKET, default /run/nixlayer/daemon.sock).
Layer caches: <cache>/config.json layerCaches, pushTo, trustedLayerKeys,
secretKeyFile, insecureRegistries, registryTimeout (see README).
Environment settings (NIXLAYER_*): docs/environment.md.
nixlayer --version: the version, its commit and the Nix found.

`)
	b.WriteString(exitCodesHelp + "\n")
	return b.String()
}

// cmdHelp prints the usage, or one command's help.
func cmdHelp(_ context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Print(usageText())
		return nil
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		return usageError{fmt.Sprintf("nixlayer help: no command %q (nixlayer help lists them)", args[0])}
	}
	printCommandHelp(os.Stdout, cmd)
	return nil
}

// parseCommand is parseArgs with the command's own flags from the table.
func parseCommand(name string, args []string) (*common, error) {
	switches, valued := ownFlags(name)
	return parseArgs(args, switches, valued)
}

// inspectCommand is inspectArgs with the command's own flags from the
// table.
func inspectCommand(name string, args []string) (*common, []string, bool, error) {
	switches, valued := ownFlags(name)
	return inspectArgs(args, switches, valued)
}

// parseFlags reads the command line of a command whose flags are all its
// own (daemon, setup-nix) with Go's flag rules (-x, --x, --x=V), from the
// table: the values by flag name ("true" for a switch given), defaults
// for those not given.
func parseFlags(name string, args []string, defaults map[string]string) (map[string]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := map[string]*string{}
	switches := map[string]*bool{}
	for _, f := range findCommand(name).flags {
		key := f.names[0]
		for _, n := range f.names {
			n = strings.TrimLeft(n, "-")
			if f.values() == 0 {
				if switches[key] == nil {
					switches[key] = fs.Bool(n, false, f.help)
				} else {
					fs.BoolVar(switches[key], n, false, f.help)
				}
				continue
			}
			if values[key] == nil {
				values[key] = fs.String(n, defaults[key], f.help)
			} else {
				fs.StringVar(values[key], n, defaults[key], f.help)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{fmt.Sprintf("%v (nixlayer %s --help lists the flags)", err, name)}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q (nixlayer %s --help)", fs.Arg(0), name)}
	}
	got := map[string]string{}
	for k, v := range values {
		got[k] = *v
	}
	for k, v := range switches {
		if *v {
			got[k] = "true"
		}
	}
	return got, nil
}

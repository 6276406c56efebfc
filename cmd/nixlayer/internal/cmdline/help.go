package cmdline

import (
	"fmt"
	"io"
	"strings"
)

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

// PrintHelp writes cmd's help: synopsis, what it does, its flags, the
// package flags, examples.
func (cmd *Command) PrintHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: nixlayer %s %s\n\n", cmd.Name, cmd.Args)
	about := cmd.About
	if about == "" {
		about = strings.ToUpper(cmd.Summary[:1]) + cmd.Summary[1:] + "."
	}
	fmt.Fprintln(w, wrap(about, 78))
	if len(cmd.Flags) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, cmd.Flags)
	}
	if cmd.Pkg {
		fmt.Fprintf(w, "\n%s\n\nPackage and common flags:\n", packageHelp)
		printFlags(w, CommonFlagSpecs())
	}
	if len(cmd.Examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range cmd.Examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
}

func printFlags(w io.Writer, flags []FlagSpec) {
	for _, f := range flags {
		left := "  " + strings.Join(f.Names, ", ")
		if f.Arg != "" {
			left += " " + f.Arg
		}
		help := f.Help
		if len(f.Choices) > 0 {
			help += " (" + strings.Join(f.Choices, ", ") + ")"
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

// Usage is `nixlayer help`: the commands from the table, then how
// packages are named and the settings.
func (t Table) Usage() string {
	var b strings.Builder
	b.WriteString("usage: nixlayer COMMAND [ARGS]   (nixlayer COMMAND --help for its flags)\n\nCommands:\n")
	for _, c := range t {
		if !c.Hidden {
			fmt.Fprintf(&b, "  %-11s %s\n", c.Name, c.Summary)
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

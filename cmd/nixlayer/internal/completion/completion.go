// Package completion writes nixlayer's bash, zsh and fish completion
// scripts, generated from the command and flag tables (package cmdline),
// and answers the scripts' questions Nix must answer: a flake's packages
// (a word with #) and a Nix file's attributes (after -A), through
// `nixlayer complete-packages`. cmd/nixlayer's completion commands call it.
package completion

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/phaserules"
)

// PackagesCommand is the hidden command the scripts run for
// FLAKE#PREFIX words.
const PackagesCommand = "complete-packages"

// Write writes the completion script for a shell (bash, zsh or fish)
// from the table; false for a shell it has no script for.
func Write(w io.Writer, commands cmdline.Table, shell string) bool {
	t := completionTable(commands)
	switch shell {
	case "bash":
		t.bash(w)
	case "zsh":
		t.zsh(w)
	case "fish":
		t.fish(w)
	default:
		return false
	}
	return true
}

// PrintPackages writes the packages a word being completed may name, one
// a line; nothing when Nix cannot say:
//
//	complete-packages FLAKE#PREFIX           the flake's packages (FLAKE#NAME)
//	complete-packages --attr PREFIX WORD...  the -A values of the Nix file the
//	                                         command line WORD... names
//	                                         (default ./default.nix)
func PrintPackages(ctx context.Context, w io.Writer, args []string) error {
	if len(args) >= 2 && args[0] == "--attr" {
		file := completionFile(args[2:])
		parent, prefix := "", args[1]
		if i := strings.LastIndexByte(prefix, '.'); i >= 0 {
			parent, prefix = prefix[:i], prefix[i+1:]
		}
		names, err := nixstore.FileAttrs(ctx, file, parent)
		if err != nil {
			return nil // completion stays quiet
		}
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				fmt.Fprintln(w, strings.TrimPrefix(parent+"."+n, "."))
			}
		}
		return nil
	}
	if len(args) != 1 {
		return cmdline.Usagef("nixlayer %s FLAKE#PREFIX | --attr PREFIX [WORD...]", PackagesCommand)
	}
	flake, prefix, ok := strings.Cut(args[0], "#")
	if !ok {
		return nil
	}
	names, err := nixstore.FlakePackages(ctx, nixstore.AbsFlakeRef(flake))
	if err != nil {
		return nil // completion stays quiet
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			fmt.Fprintln(w, flake+"#"+n)
		}
	}
	return nil
}

// completionFile is the Nix file a command line being completed names
// (-f FILE, or a positional .nix file or directory), absolute; else
// ./default.nix.
func completionFile(words []string) string {
	file := "default.nix"
	for i := 0; i < len(words); i++ {
		w := words[i]
		if (w == "-f" || w == "--file") && i+1 < len(words) {
			file = words[i+1]
			break
		}
		if f, ok := cmdline.CommonFlag(w); ok {
			i += f.Values()
			continue
		}
		if !strings.HasPrefix(w, "-") && !cmdline.IsFlakeArg(w) && (strings.HasSuffix(w, ".nix") || isDir(w)) {
			file = w
			break
		}
	}
	if isDir(file) {
		file = filepath.Join(file, "default.nix")
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return file
	}
	return abs
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// completionCommand is what the scripts know of one command.
type completionCommand struct {
	name, summary string
	pkg           bool
	flags         []cmdline.FlagSpec
}

// completionData is the tables as the scripts need them.
type completionData struct {
	commands []completionCommand
	phases   []string
}

func completionTable(commands cmdline.Table) completionData {
	var d completionData
	for _, c := range commands {
		if c.Hidden {
			continue
		}
		cc := completionCommand{name: c.Name, summary: c.Summary, pkg: c.Pkg, flags: slices.Clone(c.Flags)}
		if c.Pkg {
			cc.flags = append(cc.flags, cmdline.CommonFlagSpecs()...)
		}
		cc.flags = append(cc.flags, cmdline.FlagSpec{Names: []string{"-h", "--help"}, Help: "show the command's help"})
		d.commands = append(d.commands, cc)
	}
	d.phases = append(phaserules.StandardNames(), "failed")
	return d
}

// flagsWith are the names of every flag (of any command) whose values are
// completed as kind ("" for flags without a value).
func (d completionData) flagsWith(kind string) []string {
	var names []string
	for _, c := range d.commands {
		for _, f := range c.flags {
			if f.Values() > 0 && f.Complete == kind && len(f.Choices) == 0 && !slices.Contains(names, f.Names[0]) {
				names = append(names, f.Names...)
			}
		}
	}
	return names
}

// choiceFlags are the flags with fixed values: flag name → values.
func (d completionData) choiceFlags() map[string][]string {
	m := map[string][]string{}
	for _, c := range d.commands {
		for _, f := range c.flags {
			if len(f.Choices) > 0 {
				for _, n := range f.Names {
					m[n] = f.Choices
				}
			}
		}
	}
	return m
}

func flagNames(flags []cmdline.FlagSpec) []string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names...)
	}
	return names
}

func (d completionData) commandNames() []string {
	var names []string
	for _, c := range d.commands {
		names = append(names, c.name)
	}
	return names
}

// pkgCommands are the commands that name a package.
func (d completionData) pkgCommands() []string {
	var names []string
	for _, c := range d.commands {
		if c.pkg {
			names = append(names, c.name)
		}
	}
	return names
}

// valueFlags are flags taking a value that is free text (no completion).
func (d completionData) valueFlags() []string {
	return d.flagsWith("")
}

func (d completionData) bash(w io.Writer) {
	fmt.Fprintf(w, `# bash completion for nixlayer (generated: nixlayer completion bash)
_nixlayer() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()
    if (( COMP_CWORD == 1 )); then
        mapfile -t COMPREPLY < <(compgen -W %q -- "$cur")
        return
    fi
    local cmd=${COMP_WORDS[1]} flags=""
    case $cmd in
`, strings.Join(append(d.commandNames(), "--help", "--version"), " "))
	for _, c := range d.commands {
		fmt.Fprintf(w, "        %s) flags=%q ;;\n", c.name, strings.Join(flagNames(c.flags), " "))
	}
	fmt.Fprintf(w, `    esac
    case $prev in
        %s)
            mapfile -t COMPREPLY < <(compgen -W %q -- "$cur"); return ;;
`, strings.Join(d.flagsWith(cmdline.CompletePhase), "|"), strings.Join(d.phases, " "))
	for flag, values := range sortedMap(d.choiceFlags()) {
		fmt.Fprintf(w, "        %s) mapfile -t COMPREPLY < <(compgen -W %q -- \"$cur\"); return ;;\n", flag, strings.Join(values, " "))
	}
	fmt.Fprintf(w, `        %s)
            mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
        %s)
            mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        %s)
            mapfile -t COMPREPLY < <(nixlayer %s --attr "$cur" "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null); return ;;
        %s)
            return ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
    elif [[ $cur == *'#'* && " %s " == *" $cmd "* ]]; then
        mapfile -t COMPREPLY < <(nixlayer %s "$cur" 2>/dev/null)
    elif [[ $cmd == completion ]]; then
        mapfile -t COMPREPLY < <(compgen -W "bash zsh fish" -- "$cur")
    elif [[ $cmd == help ]]; then
        mapfile -t COMPREPLY < <(compgen -W %q -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}
complete -o filenames -o bashdefault -F _nixlayer nixlayer
`, strings.Join(d.flagsWith(cmdline.CompleteDir), "|"), strings.Join(d.flagsWith(cmdline.CompleteFile), "|"),
		strings.Join(d.flagsWith(cmdline.CompletePackage), "|"), PackagesCommand, strings.Join(d.valueFlags(), "|"),
		strings.Join(d.pkgCommands(), " "), PackagesCommand, strings.Join(d.commandNames(), " "))
}

func (d completionData) zsh(w io.Writer) {
	fmt.Fprint(w, `#compdef nixlayer
# zsh completion for nixlayer (generated: nixlayer completion zsh). Put it
# in a directory of $fpath as _nixlayer, or source it.
_nixlayer() {
    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} cmd=${words[2]}
    if (( CURRENT == 2 )); then
        local -a cmds
        cmds=(
`)
	for _, c := range d.commands {
		fmt.Fprintf(w, "            %s\n", zshItem(c.name, c.summary))
	}
	fmt.Fprintf(w, `        )
        _describe -t commands 'nixlayer command' cmds
        return
    fi
    case $prev in
        %s) compadd -- %s; return ;;
`, strings.Join(d.flagsWith(cmdline.CompletePhase), "|"), strings.Join(d.phases, " "))
	for flag, values := range sortedMap(d.choiceFlags()) {
		fmt.Fprintf(w, "        %s) compadd -- %s; return ;;\n", flag, strings.Join(values, " "))
	}
	fmt.Fprintf(w, `        %s) _files -/; return ;;
        %s) _files; return ;;
        %s)
            local -a attrs
            attrs=(${(f)"$(nixlayer %s --attr "$cur" "${(@)words[2,CURRENT-1]}" 2>/dev/null)"})
            compadd -U -- $attrs
            return ;;
        %s) return ;;
    esac
    local -a flags
    case $cmd in
`, strings.Join(d.flagsWith(cmdline.CompleteDir), "|"), strings.Join(d.flagsWith(cmdline.CompleteFile), "|"),
		strings.Join(d.flagsWith(cmdline.CompletePackage), "|"), PackagesCommand, strings.Join(d.valueFlags(), "|"))
	for _, c := range d.commands {
		var specs []string
		for _, f := range c.flags {
			for _, n := range f.Names {
				specs = append(specs, zshItem(n, f.Help))
			}
		}
		fmt.Fprintf(w, "        %s) flags=(%s) ;;\n", c.name, strings.Join(specs, " "))
	}
	fmt.Fprintf(w, `    esac
    if [[ $cur == -* ]]; then
        _describe -t flags 'flag' flags
    elif [[ $cur == *'#'* && " %s " == *" $cmd "* ]]; then
        local -a pkgs
        pkgs=(${(f)"$(nixlayer %s "$cur" 2>/dev/null)"})
        compadd -U -- $pkgs
    elif [[ $cmd == completion ]]; then
        compadd -- bash zsh fish
    elif [[ $cmd == help ]]; then
        compadd -- %s
    else
        _files
    fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _nixlayer "$@"
else
    compdef _nixlayer nixlayer
fi
`, strings.Join(d.pkgCommands(), " "), PackagesCommand, strings.Join(d.commandNames(), " "))
}

func (d completionData) fish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion for nixlayer (generated: nixlayer completion fish)\n")
	fmt.Fprintf(w, "complete -c nixlayer -f\n")
	for _, c := range d.commands {
		fmt.Fprintf(w, "complete -c nixlayer -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
	}
	fmt.Fprintf(w, "complete -c nixlayer -n __fish_use_subcommand -l version -d %s\n", fishQuote("print the version, commit and Nix"))
	for _, c := range d.commands {
		cond := fishQuote("__fish_seen_subcommand_from " + c.name)
		for _, f := range c.flags {
			var opts []string
			for _, n := range f.Names {
				if strings.HasPrefix(n, "--") {
					opts = append(opts, "-l", n[2:])
				} else {
					opts = append(opts, "-s", n[1:])
				}
			}
			switch {
			case len(f.Choices) > 0:
				opts = append(opts, "-x", "-a", fishQuote(strings.Join(f.Choices, " ")))
			case f.Complete == cmdline.CompletePhase:
				opts = append(opts, "-x", "-a", fishQuote(strings.Join(d.phases, " ")))
			case f.Complete == cmdline.CompletePackage:
				opts = append(opts, "-x", "-a", fishQuote("(nixlayer "+PackagesCommand+" --attr (commandline -ct) (commandline -opc)[2..-1] 2>/dev/null)"))
			case f.Complete == cmdline.CompleteFile || f.Complete == cmdline.CompleteDir:
				opts = append(opts, "-r", "-F")
			case f.Values() > 0:
				opts = append(opts, "-x")
			}
			fmt.Fprintf(w, "complete -c nixlayer -n %s %s -d %s\n", cond, strings.Join(opts, " "), fishQuote(f.Help))
		}
	}
	pkgs := fishQuote("__fish_seen_subcommand_from " + strings.Join(d.pkgCommands(), " "))
	fmt.Fprintf(w, "complete -c nixlayer -n %s -F\n", pkgs)
	fmt.Fprintf(w, "complete -c nixlayer -n %s -a %s\n", pkgs, fishQuote("(string match -q -- '*#*' (commandline -ct); and nixlayer "+PackagesCommand+" (commandline -ct) 2>/dev/null)"))
	fmt.Fprintf(w, "complete -c nixlayer -n %s -a 'bash zsh fish'\n", fishQuote("__fish_seen_subcommand_from completion"))
	fmt.Fprintf(w, "complete -c nixlayer -n %s -a %s\n", fishQuote("__fish_seen_subcommand_from help"), fishQuote(strings.Join(d.commandNames(), " ")))
}

// zshQuote quotes s for zsh (single quotes; ' as '\”).
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fishQuote quotes s for fish (single quotes; \ and ' escaped).
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// sortedMap iterates a map in key order (stable scripts).
func sortedMap(m map[string][]string) func(func(string, []string) bool) {
	return func(yield func(string, []string) bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}

// zshItem is a _describe item: NAME:DESCRIPTION, the colons in the name
// escaped.
func zshItem(name, desc string) string {
	return zshQuote(strings.ReplaceAll(name, ":", `\:`) + ":" + desc)
}

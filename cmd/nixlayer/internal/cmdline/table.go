// Package cmdline reads nixlayer's command line: the types of the one
// table of commands and flags (the table itself, with each command's run
// function, is cmd/nixlayer's), the package flags every package command
// takes (a package named as nix-build or nix build names it), the parsers
// over them, every command's --help and the usage text, and the exit
// codes of usage errors. cmd/nixlayer and the completion scripts
// (cmd/nixlayer/internal/completion) read it.
package cmdline

import (
	"context"
	"slices"
	"strings"
)

// Command is one of nixlayer's commands: what run dispatches, and what
// help and the completion scripts say of it. Its own flags are in Flags;
// a command that names a package also takes the common flags.
type Command struct {
	Name     string
	Args     string // the synopsis after "nixlayer NAME"
	Summary  string // one line for the command list
	About    string // help: what it does, a paragraph
	Pkg      bool   // names a package: the common flags apply
	Flags    []FlagSpec
	Examples []string
	Run      func(context.Context, []string) error
	Hidden   bool // Nix runs it (hook wrappers); not in the command list
}

// FlagSpec is a flag as parsers, help and completion read it.
type FlagSpec struct {
	Names []string
	Arg   string // its values' names ("NAME EXPR"); "" for a switch
	Help  string
	// Choices are the values it takes (completion; --flag=VALUE is
	// accepted as one word too); Complete names a kind of value the
	// completion scripts offer: "phase", "file", "dir".
	Choices  []string
	Complete string
}

// Values is how many arguments follow the flag.
func (f FlagSpec) Values() int { return len(strings.Fields(f.Arg)) }

// Table is the one table of nixlayer's commands.
type Table []Command

// Kinds of completion values.
const (
	CompletePhase   = "phase"
	CompleteFile    = "file"
	CompleteDir     = "dir"
	CompletePackage = "package"
)

// Find is the command of that name (nil if none).
func (t Table) Find(name string) *Command {
	for i := range t {
		if t[i].Name == name {
			return &t[i]
		}
	}
	return nil
}

// OwnFlags are the command's flags as Parse takes them: switches
// (with --flag=CHOICE for a value flag's choices) and value flags.
func (t Table) OwnFlags(name string) (switches, valued []string) {
	cmd := t.Find(name)
	if cmd == nil {
		panic("nixlayer: no command " + name)
	}
	for _, f := range cmd.Flags {
		if f.Values() == 0 {
			switches = append(switches, f.Names...)
			continue
		}
		valued = append(valued, f.Names...)
		for _, n := range f.Names {
			for _, v := range f.Choices {
				switches = append(switches, n+"="+v)
			}
		}
	}
	return switches, valued
}

// WantsHelp reports whether -h or --help is one of the command's flags
// (not a flag's value).
func (cmd *Command) WantsHelp(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" {
			return true
		}
		if n := cmd.flagValues(a); n > 0 {
			i += n
		}
	}
	return false
}

// flagValues is how many values follow flag a of cmd.
func (cmd *Command) flagValues(a string) int {
	if cmd.Pkg {
		if f, ok := commonFlags[a]; ok {
			return f.Values()
		}
	}
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names, a) {
			return f.Values()
		}
	}
	return 0
}

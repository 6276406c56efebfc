// Package shellstate captures the state of a builder's bash (variables,
// functions, working directory, options) and turns the change between two
// captures into a script that recreates it in a fresh bash. This is what
// lets every phase run in its own process yet behave as if the whole build
// ran in one shell.
package shellstate

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// DumpCommand is bash that writes one capture to fd 4: `declare -p`,
// `declare -f`, the working directory and the shell options, each section
// ended by a NUL (which no bash value can contain).
const DumpCommand = `{ declare -p; printf "\0"; declare -f; printf "\0%s\0" "$PWD"; shopt -p; set +o; umask -p; printf "\0"; } >&4`

// Capture is one parsed dump.
type Capture struct {
	Vars    map[string]Var
	Funcs   map[string]string // name → definition
	Cwd     string
	Options map[string]string // option name → the command that sets it
}

// Var is one variable as `declare -p` printed it.
type Var struct {
	Decl  string // the whole declaration, runnable
	Flags string // attribute letters, e.g. "x", "a", "Ar"
}

// ParseDumps splits the output of consecutive DumpCommand runs.
func ParseDumps(data []byte) ([]*Capture, error) {
	fields := bytes.Split(data, []byte{0})
	// Each dump has four NUL-terminated sections, so a complete stream
	// splits into 4n+1 fields with an empty last one.
	if len(fields)%4 != 1 || len(fields[len(fields)-1]) != 0 {
		return nil, fmt.Errorf("shell state dump is truncated (%d sections)", len(fields)-1)
	}
	var caps []*Capture
	for i := 0; i+4 <= len(fields)-1; i += 4 {
		c, err := parseOne(fields[i], fields[i+1], fields[i+2], fields[i+3])
		if err != nil {
			return nil, fmt.Errorf("shell state dump %d: %w", i/4+1, err)
		}
		caps = append(caps, c)
	}
	return caps, nil
}

func parseOne(vars, funcs, cwd, opts []byte) (*Capture, error) {
	c := &Capture{Vars: map[string]Var{}, Funcs: map[string]string{}, Cwd: string(cwd), Options: map[string]string{}}
	p := syntax.NewParser(syntax.Variant(syntax.LangBash))
	f, err := p.Parse(bytes.NewReader(vars), "declare-p")
	if err != nil {
		return nil, fmt.Errorf("parse variables: %w", err)
	}
	for _, st := range f.Stmts {
		d, ok := st.Cmd.(*syntax.DeclClause)
		if !ok {
			continue
		}
		name, flags := "", ""
		for _, a := range d.Args {
			if a.Naked && a.Name == nil && a.Value != nil {
				if lit := a.Value.Lit(); strings.HasPrefix(lit, "-") {
					flags += strings.Trim(lit, "-")
				}
				continue
			}
			if a.Name != nil {
				name = a.Name.Value
			}
		}
		if name == "" {
			continue
		}
		c.Vars[name] = Var{Decl: source(vars, st), Flags: flags}
	}
	f, err = p.Parse(bytes.NewReader(funcs), "declare-f")
	if err != nil {
		return nil, fmt.Errorf("parse functions: %w", err)
	}
	for _, st := range f.Stmts {
		if fd, ok := st.Cmd.(*syntax.FuncDecl); ok && fd.Name != nil && fd.Name.Value != "" {
			c.Funcs[fd.Name.Value] = source(funcs, st)
		}
	}
	for _, line := range strings.Split(string(opts), "\n") {
		fs := strings.Fields(line)
		switch {
		case len(fs) == 3 && (fs[0] == "shopt" || fs[0] == "set"):
			c.Options[fs[0]+" "+fs[2]] = line
		case len(fs) == 2 && fs[0] == "umask":
			c.Options["umask"] = line
		}
	}
	return c, nil
}

// source is the text of a statement (clamped: a malformed dump must not
// make the parser's positions index past it).
func source(src []byte, st *syntax.Stmt) string {
	start, end := int(st.Pos().Offset()), int(st.End().Offset())
	if end > len(src) {
		end = len(src)
	}
	if start > end {
		start = end
	}
	return string(src[start:end])
}

// Delta is the change from a fresh shell (stdenv sourced) to a later state:
// what the next phase's shell must redo.
type Delta struct {
	Vars       map[string]string `json:"vars,omitempty"`  // name → declaration
	Unset      []string          `json:"unset,omitempty"` // variables removed
	Funcs      map[string]string `json:"funcs,omitempty"` // name → definition
	UnsetFuncs []string          `json:"unsetFuncs,omitempty"`
	Options    []string          `json:"options,omitempty"`
	Cwd        string            `json:"cwd"`
}

// internal lists bash's own variables, which must never be carried over.
var internal = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`BASH BASHOPTS BASHPID BASH_ALIASES BASH_ARGC BASH_ARGV BASH_ARGV0
		BASH_CMDS BASH_COMMAND BASH_EXECUTION_STRING BASH_LINENO BASH_LOADABLES_PATH BASH_REMATCH
		BASH_SOURCE BASH_SUBSHELL BASH_VERSINFO BASH_VERSION COLUMNS COMP_WORDBREAKS DIRSTACK
		EPOCHREALTIME EPOCHSECONDS EUID FUNCNAME GROUPS HISTCMD HISTFILE HISTFILESIZE HISTSIZE
		HOSTNAME HOSTTYPE LINENO LINES MACHTYPE MAILCHECK OLDPWD OPTERR OPTIND OSTYPE PIPESTATUS
		PPID PS1 PS2 PS4 PWD RANDOM SECONDS SHELLOPTS SHLVL SRANDOM UID _`) {
		internal[n] = true
	}
}

// Private reports names that belong to nixlayer's own driver.
func Private(name string) bool { return strings.HasPrefix(name, "__nl_") }

func carried(name string, v Var) bool {
	return !internal[name] && !Private(name) && !strings.Contains(v.Flags, "r")
}

// Diff computes what turns base into after.
func Diff(base, after *Capture) *Delta {
	d := &Delta{Vars: map[string]string{}, Funcs: map[string]string{}, Cwd: after.Cwd}
	for name, v := range after.Vars {
		if !carried(name, v) {
			continue
		}
		if b, ok := base.Vars[name]; !ok || b.Decl != v.Decl {
			d.Vars[name] = v.Decl
		}
	}
	for name, v := range base.Vars {
		if _, ok := after.Vars[name]; !ok && carried(name, v) {
			d.Unset = append(d.Unset, name)
		}
	}
	for name, f := range after.Funcs {
		if Private(name) {
			continue
		}
		if b, ok := base.Funcs[name]; !ok || b != f {
			d.Funcs[name] = f
		}
	}
	for name := range base.Funcs {
		if _, ok := after.Funcs[name]; !ok && !Private(name) {
			d.UnsetFuncs = append(d.UnsetFuncs, name)
		}
	}
	for k, line := range after.Options {
		if base.Options[k] != line {
			d.Options = append(d.Options, line)
		}
	}
	sort.Strings(d.Unset)
	sort.Strings(d.UnsetFuncs)
	sort.Strings(d.Options)
	return d
}

// Script is bash that recreates the delta when sourced at top level of a
// shell that has just sourced the stdenv.
func (d *Delta) Script() string {
	var b strings.Builder
	for _, n := range d.Unset {
		fmt.Fprintf(&b, "unset -v %s\n", n)
	}
	for _, n := range slices.Sorted(maps.Keys(d.Vars)) {
		decl := d.Vars[n]
		// Redeclaring with another array kind fails; start from scratch.
		unset := "-v"
		if fs := strings.Fields(decl); len(fs) > 1 && strings.HasPrefix(fs[1], "-") && strings.Contains(fs[1], "n") {
			unset = "-n" // unsetting a nameref with -v would hit its target
		}
		fmt.Fprintf(&b, "unset %s %s 2>/dev/null || true\n%s\n", unset, n, globalDecl(decl))
	}
	for _, n := range d.UnsetFuncs {
		fmt.Fprintf(&b, "unset -f %s\n", n)
	}
	for _, n := range slices.Sorted(maps.Keys(d.Funcs)) {
		b.WriteString(d.Funcs[n])
		b.WriteString("\n")
	}
	for _, o := range d.Options {
		b.WriteString(o + "\n")
	}
	if d.Cwd != "" {
		fmt.Fprintf(&b, "cd %s\n", syntaxQuote(d.Cwd))
	}
	return b.String()
}

// globalDecl makes a `declare` act on the global scope even when the script
// is sourced from inside a function.
func globalDecl(decl string) string {
	if strings.HasPrefix(decl, "declare ") {
		return "declare -g " + strings.TrimPrefix(decl, "declare ")
	}
	return decl
}

func syntaxQuote(s string) string {
	q, err := syntax.Quote(s, syntax.LangBash)
	if err != nil {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return q
}

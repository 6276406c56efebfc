package cmdline

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/nixstore"
)

// Args holds the flags every package command takes.
type Args struct {
	Target   nixstore.Target
	CacheDir string
	Verbose  bool
	JSON     bool
	Strict   bool
	From     string
	Quiet    bool
	NoLink   bool
	OutLink  string
	Extra    []string // flags this command handles itself
	Flags    map[string]bool
	// Layer caches: accept chains without a trusted signature (marked not
	// verified); plain HTTP to every registry.
	NoCheckSigs bool
	Insecure    bool
}

// commonFlag is one of the flags every package command takes.
type commonFlag struct {
	FlagSpec
	pkg bool // the flag names the package (file, expression or attribute)
	set func(c *Args, v []string)
}

// commonFlagTable is the one table of the package commands' flags:
// Parse reads them, Inspect tells them from positional arguments,
// help and the completion scripts list them.
var commonFlagTable = []commonFlag{
	{FlagSpec{Names: []string{"-A", "--attr"}, Arg: "ATTR", Help: "the attribute of the Nix file to build (as nix-build -A)", Complete: CompletePackage}, true,
		func(c *Args, v []string) { c.Target.Attr = v[0] }},
	{FlagSpec{Names: []string{"-f", "--file"}, Arg: "FILE", Help: "the Nix file (default ./default.nix)", Complete: CompleteFile}, true,
		func(c *Args, v []string) { c.Target.File = v[0] }},
	{FlagSpec{Names: []string{"-E", "--expr"}, Arg: "EXPR", Help: "a Nix expression giving the derivation"}, true,
		func(c *Args, v []string) { c.Target.Expr = v[0] }},
	{FlagSpec{Names: []string{"--arg"}, Arg: "NAME EXPR", Help: "pass NAME = EXPR to the file's function"}, false,
		func(c *Args, v []string) { c.Target.Args[v[0]] = v[1] }},
	{FlagSpec{Names: []string{"--argstr"}, Arg: "NAME STRING", Help: "pass NAME = \"STRING\" to the file's function"}, false,
		func(c *Args, v []string) { c.Target.ArgStrs[v[0]] = v[1] }},
	{FlagSpec{Names: []string{"--override-input"}, Arg: "INPUT REF", Help: "a flake: use REF for the input INPUT (as nix build)"}, false,
		func(c *Args, v []string) { c.Target.OverrideInputs[v[0]] = v[1] }},
	{FlagSpec{Names: []string{"--impure"}, Help: "a flake: evaluate impurely (as nix build)"}, false,
		func(c *Args, _ []string) { c.Target.Impure = true }},
	{FlagSpec{Names: []string{"--cache"}, Arg: "DIR", Help: "the layer cache (root only; default /var/cache/nixlayer, $NIXLAYER_CACHE)", Complete: CompleteDir}, false,
		func(c *Args, v []string) { c.CacheDir = v[0] }},
	{FlagSpec{Names: []string{"--from"}, Arg: "PHASE", Help: "rerun from this phase even if it is cached", Complete: CompletePhase}, false,
		func(c *Args, v []string) { c.From = v[0] }},
	{FlagSpec{Names: []string{"-o", "--out-link"}, Arg: "PATH", Help: "the result link (default ./result)", Complete: CompleteFile}, false,
		func(c *Args, v []string) { c.OutLink = v[0] }},
	{FlagSpec{Names: []string{"--no-out-link"}, Help: "make no result link"}, false,
		func(c *Args, _ []string) { c.NoLink = true }},
	{FlagSpec{Names: []string{"--strict"}, Help: "key every phase on every attribute (no phase placement)"}, false,
		func(c *Args, _ []string) { c.Strict = true }},
	{FlagSpec{Names: []string{"--json"}, Help: "print the result as JSON"}, false,
		func(c *Args, _ []string) { c.JSON = true }},
	{FlagSpec{Names: []string{"-Q", "--no-build-output"}, Help: "hide the builder's output"}, false,
		func(c *Args, _ []string) { c.Quiet = true }},
	{FlagSpec{Names: []string{"-v", "--verbose"}, Help: "debug log on stderr"}, false,
		func(c *Args, _ []string) { c.Verbose = true }},
	{FlagSpec{Names: []string{"--no-check-sigs"}, Help: "use pulled chains no trusted key signed (marked not verified)"}, false,
		func(c *Args, _ []string) { c.NoCheckSigs = true }},
	{FlagSpec{Names: []string{"--insecure"}, Help: "plain HTTP to registries"}, false,
		func(c *Args, _ []string) { c.Insecure = true }},
}

// commonFlags indexes commonFlagTable by name.
var commonFlags = indexFlags(commonFlagTable)

func indexFlags(flags []commonFlag) map[string]commonFlag {
	byName := map[string]commonFlag{}
	for _, f := range flags {
		for _, n := range f.Names {
			byName[n] = f
		}
	}
	return byName
}

// CommonFlagSpecs are the common flags as help and completion list them.
func CommonFlagSpecs() []FlagSpec {
	specs := make([]FlagSpec, len(commonFlagTable))
	for i, f := range commonFlagTable {
		specs[i] = f.FlagSpec
	}
	return specs
}

// CommonFlag is the common flag of that name, if it is one.
func CommonFlag(name string) (FlagSpec, bool) {
	f, ok := commonFlags[name]
	return f.FlagSpec, ok
}

// NamesPackage reports whether a flag that names the package (-A, -f,
// -E) is among args.
func NamesPackage(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return commonFlags[a].pkg })
}

// Parse reads nix-build-like arguments; boolFlags and valueFlags name
// the command's own extra flags.
func Parse(args []string, boolFlags, valueFlags []string) (*Args, error) {
	c := &Args{OutLink: "result", Flags: map[string]bool{}}
	c.Target.Args, c.Target.ArgStrs, c.Target.OverrideInputs = map[string]string{}, map[string]string{}, map[string]string{}
	need := func(i, n int, flag string) error {
		if i+n >= len(args) {
			return UsageError{fmt.Sprintf("%s needs %d argument(s)", flag, n)}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		f, isCommon := commonFlags[a]
		switch {
		case isCommon:
			n := f.Values()
			if err := need(i, n, a); err != nil {
				return nil, err
			}
			f.set(c, args[i+1:i+1+n])
			i += n
		case slices.Contains(boolFlags, a):
			c.Flags[a] = true
		case slices.Contains(valueFlags, a):
			if err := need(i, 1, a); err != nil {
				return nil, err
			}
			c.Extra = append(c.Extra, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			return nil, UsageError{fmt.Sprintf("unknown flag %s (nixlayer COMMAND --help lists the flags)", a)}
		default:
			switch {
			case c.Target.File != "" || c.Target.Flake != "":
				c.Extra = append(c.Extra, a)
			case IsFlakeArg(a):
				c.Target.Flake = nixstore.AbsFlakeRef(a)
			default:
				c.Target.File = a
			}
		}
	}
	if c.Target.File == "" && c.Target.Expr == "" && c.Target.Flake == "" {
		// As nix-build does, then as nix build does.
		c.Target.File = "./default.nix"
		if _, err := os.Stat(c.Target.File); err != nil {
			if !nixstore.HasFlake(".") {
				return nil, fmt.Errorf("no package given and no default.nix or flake.nix here: use FILE -A ATTR, -E EXPR, a flake reference (.#hello) or a .drv path")
			}
			c.Target.File, c.Target.Flake = "", nixstore.AbsFlakeRef(".")
		}
	}
	if c.Target.File != "" && !strings.HasSuffix(c.Target.File, ".drv") {
		if abs, err := filepath.Abs(c.Target.File); err == nil {
			c.Target.File = abs
		}
	}
	return c, nil
}

// IsFlakeArg tells a positional package argument that names a flake: a
// flake reference (.#hello, path:…, github:…), or a directory with a
// flake.nix and no default.nix (nix-build's reading wins when both exist).
func IsFlakeArg(a string) bool {
	if nixstore.IsFlakeRef(a) {
		return true
	}
	if fi, err := os.Stat(a); err != nil || !fi.IsDir() {
		return false
	}
	_, err := os.Stat(filepath.Join(a, "default.nix"))
	return err != nil && nixstore.HasFlake(a)
}

// Value returns the value of one of the command's own value flags.
func (c *Args) Value(flag string) string {
	for i := 0; i+1 < len(c.Extra); i++ {
		if c.Extra[i] == flag {
			return c.Extra[i+1]
		}
	}
	return ""
}

// ProgressJSON: --progress=json (or --progress json) asks for JSON
// lines, one event each; text is the default.
func (c *Args) ProgressJSON() bool {
	return c.Flags["--progress=json"] || c.Value("--progress") == "json"
}

// CheckProgress refuses a --progress other than json and text.
func (c *Args) CheckProgress() error {
	switch v := c.Value("--progress"); v {
	case "", "json", "text":
		return nil
	default:
		return fmt.Errorf("--progress takes json or text, not %q", v)
	}
}

// Inspect splits a command line into the package (as Parse reads it)
// and the command's positional arguments. The first positional argument
// is the package only when no -f/-E is given and it looks like one (a
// .drv, a .nix file, or a directory with default.nix). hasPkg is false
// when no package was named at all.
func Inspect(args, boolFlags, valueFlags []string) (c *Args, pos []string, hasPkg bool, err error) {
	takes := func(a string) (int, bool) {
		if f, ok := commonFlags[a]; ok {
			return f.Values(), f.Values() > 0
		}
		return 1, slices.Contains(valueFlags, a)
	}
	explicit := NamesPackage(args)
	var pkgArgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if n, ok := takes(a); ok {
			end := min(i+n+1, len(args))
			pkgArgs = append(pkgArgs, args[i:end]...)
			i = end - 1
			continue
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			pkgArgs = append(pkgArgs, a)
			continue
		}
		if !explicit && !hasPkg && len(pos) == 0 && looksLikePackage(a) {
			pkgArgs = append(pkgArgs, a)
			hasPkg = true
			continue
		}
		pos = append(pos, a)
	}
	hasPkg = hasPkg || explicit
	sentinel := !hasPkg
	if sentinel {
		pkgArgs = append(pkgArgs, "-E", "null")
	}
	c, err = Parse(pkgArgs, boolFlags, valueFlags)
	if err != nil {
		return nil, nil, false, err
	}
	if sentinel {
		c.Target.Expr = ""
	}
	return c, pos, hasPkg, nil
}

func looksLikePackage(a string) bool {
	if strings.HasSuffix(a, ".drv") || strings.HasSuffix(a, ".nix") || IsFlakeArg(a) {
		return true
	}
	fi, err := os.Stat(filepath.Join(a, "default.nix"))
	return err == nil && !fi.IsDir()
}

// Parse is the package-level Parse with the command's own flags from the
// table.
func (t Table) Parse(name string, args []string) (*Args, error) {
	switches, valued := t.OwnFlags(name)
	return Parse(args, switches, valued)
}

// Inspect is the package-level Inspect with the command's own flags from
// the table.
func (t Table) Inspect(name string, args []string) (*Args, []string, bool, error) {
	switches, valued := t.OwnFlags(name)
	return Inspect(args, switches, valued)
}

// RegistryRef takes the REF of a push or pull out of its arguments: the
// first argument that is neither a flag nor a flag's value (the package,
// if any, follows it).
func RegistryRef(args, valueFlags []string, usage string) (string, []string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if f, ok := commonFlags[a]; ok {
			i += f.Values()
			continue
		}
		if slices.Contains(valueFlags, a) {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		return a, append(slices.Clone(args[:i]), args[i+1:]...), nil
	}
	return "", nil, Usagef("%s", usage)
}

// ParseFlags reads the command line of a command whose flags are all its
// own (daemon, setup-nix) with Go's flag rules (-x, --x, --x=V), from the
// table: the values by flag name ("true" for a switch given), defaults
// for those not given.
func (t Table) ParseFlags(name string, args []string, defaults map[string]string) (map[string]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := map[string]*string{}
	switches := map[string]*bool{}
	for _, f := range t.Find(name).Flags {
		key := f.Names[0]
		for _, n := range f.Names {
			n = strings.TrimLeft(n, "-")
			if f.Values() == 0 {
				if switches[key] == nil {
					switches[key] = fs.Bool(n, false, f.Help)
				} else {
					fs.BoolVar(switches[key], n, false, f.Help)
				}
				continue
			}
			if values[key] == nil {
				values[key] = fs.String(n, defaults[key], f.Help)
			} else {
				fs.StringVar(values[key], n, defaults[key], f.Help)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, UsageError{fmt.Sprintf("%v (nixlayer %s --help lists the flags)", err, name)}
	}
	if fs.NArg() > 0 {
		return nil, UsageError{fmt.Sprintf("unexpected argument %q (nixlayer %s --help)", fs.Arg(0), name)}
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

// ParseAge reads Go durations plus days (7d).
func ParseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, fmt.Errorf("bad age %q (use e.g. 7d, 12h)", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad age %q (use e.g. 7d, 12h)", s)
	}
	return d, nil
}

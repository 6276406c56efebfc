package nixstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Target says what to instantiate: a file (default ./default.nix) or an
// expression, an optional attribute path, and --arg / --argstr values; or
// a flake reference with its --override-input and --impure switches.
type Target struct {
	// Flake is a flake reference as `nix build` takes it (.#hello,
	// path:/src#hello, github:owner/repo); the fields for Nix files are
	// then empty.
	Flake          string
	OverrideInputs map[string]string // --override-input INPUT REF
	Impure         bool              // --impure
	File           string
	Attr           string
	Expr           string
	Args           map[string]string // --arg NAME EXPR
	ArgStrs        map[string]string // --argstr NAME STRING
	// Source, when set, is evaluated instead of File (from stdin, in File's
	// directory so relative paths resolve as in the file): an editor's
	// unsaved buffer.
	Source []byte

	// KeepLockFile evaluates a flake without writing its lock file (an
	// editor looks at a flake; nix build writes the lock).
	KeepLockFile bool
}

// Instantiate evaluates t with nix-instantiate (a flake reference: with
// nix, as `nix build` would) and returns the .drv paths (in Nix's order,
// without duplicates). A t.File that is a .drv file is returned as is.
func Instantiate(ctx context.Context, t Target) ([]string, error) {
	if t.Flake != "" {
		return instantiateFlake(ctx, t)
	}
	if err := t.checkFlake(); err != nil {
		return nil, err
	}
	if t.Expr == "" && t.Source == nil && strings.HasSuffix(t.File, ".drv") {
		if strings.HasPrefix(t.File, StoreDir()+"/") {
			if _, err := os.Stat(t.File); err != nil {
				return nil, fmt.Errorf("derivation %s: %w; instantiate its Nix expression again", t.File, err)
			}
			return []string{t.File}, nil
		}
		return nil, fmt.Errorf("%s is a .drv file outside the Nix store %s: pass the store path printed by nix-instantiate", t.File, StoreDir())
	}
	if t.Expr != "" && t.File != "" {
		return nil, fmt.Errorf("instantiate: both a file (%s) and an expression were given; pass one", t.File)
	}
	args := append([]string{"--no-gc-warning"}, t.Argv("")...)
	var stdin io.Reader
	dir := ""
	if t.Source != nil {
		stdin, dir = bytes.NewReader(t.Source), filepath.Dir(t.File)
	}
	out, err := runIn(ctx, dir, stdin, "nix-instantiate", args...)
	if err != nil {
		return nil, fmt.Errorf("instantiating %s: %w", t.describe(), err)
	}
	var drvs []string
	seen := map[string]bool{}
	for _, l := range lines(out) {
		// nix-instantiate prints drv!output for non-default outputs.
		if i := strings.IndexByte(l, '!'); i >= 0 {
			l = l[:i]
		}
		if !seen[l] {
			seen[l] = true
			drvs = append(drvs, l)
		}
	}
	if len(drvs) == 0 {
		return nil, fmt.Errorf("instantiating %s: nix-instantiate printed no derivation; does the expression evaluate to a derivation?", t.describe())
	}
	return drvs, nil
}

func (t Target) describe() string {
	if t.Flake != "" {
		return t.Flake
	}
	s := t.File
	if t.Expr != "" {
		s = "expression " + strings.Join(strings.Fields(t.Expr), " ")
		if len(s) > 80 {
			s = s[:80] + "…"
		}
	}
	if s == "" {
		s = "./default.nix"
	}
	if t.Attr != "" {
		s += " -A " + t.Attr
	}
	return s
}

// Argv renders t as the command-line arguments nix-instantiate, nix-build
// and nixlayer share: -E EXPR, "-" (Source, read from stdin) or the file
// (after fileFlag when one is given: nixlayer takes "-f FILE", Nix's tools
// the bare file), then -A ATTR, then the --arg and --argstr pairs sorted by
// name. A flake reference renders as `nix build` takes it: the reference,
// then --override-input pairs sorted by input and --impure.
func (t Target) Argv(fileFlag string) []string {
	if t.Flake != "" {
		return append([]string{t.Flake}, t.flakeArgs()...)
	}
	var argv []string
	switch {
	case t.Expr != "":
		argv = append(argv, "-E", t.Expr)
	case t.Source != nil:
		argv = append(argv, "-")
	case t.File != "" && fileFlag != "":
		argv = append(argv, fileFlag, t.File)
	case t.File != "":
		argv = append(argv, t.File)
	}
	if t.Attr != "" {
		argv = append(argv, "-A", t.Attr)
	}
	for _, name := range slices.Sorted(maps.Keys(t.Args)) {
		argv = append(argv, "--arg", name, t.Args[name])
	}
	for _, name := range slices.Sorted(maps.Keys(t.ArgStrs)) {
		argv = append(argv, "--argstr", name, t.ArgStrs[name])
	}
	return argv
}

// Realise builds or substitutes paths (store paths or .drv paths) with
// nix-store --realise. Nix's progress goes to the WithLog writer; on
// failure the end of it is in the error.
func Realise(ctx context.Context, paths ...string) error {
	if len(paths) == 0 {
		return nil
	}
	_, err := run(ctx, nil, "nix-store", append([]string{"--realise", "--no-gc-warning"}, paths...)...)
	if err != nil {
		return fmt.Errorf("realising %s: %w", strings.Join(paths, " "), err)
	}
	return nil
}

// Closure returns the closure of paths (nix-store -qR), sorted. All paths
// must be valid.
func Closure(ctx context.Context, paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	out, err := run(ctx, nil, "nix-store", append([]string{"-qR"}, paths...)...)
	if err != nil {
		return nil, fmt.Errorf("computing the closure of %s: %w (realise the paths first)", strings.Join(paths, " "), err)
	}
	res := lines(out)
	sort.Strings(res)
	return res, nil
}

// IsValid reports whether path is a valid (registered) store path.
func IsValid(ctx context.Context, path string) (bool, error) {
	invalid, err := InvalidPaths(ctx, []string{path})
	if err != nil {
		return false, err
	}
	return len(invalid) == 0, nil
}

// AllValid reports whether every one of paths is valid, in one query.
func AllValid(ctx context.Context, paths []string) (bool, error) {
	invalid, err := InvalidPaths(ctx, paths)
	if err != nil {
		return false, err
	}
	return len(invalid) == 0, nil
}

// InvalidPaths returns those of paths that are not valid.
func InvalidPaths(ctx context.Context, paths []string) ([]string, error) {
	for _, p := range paths {
		if !IsStorePath(p) {
			return nil, fmt.Errorf("%s is not a store path (expected %s/<hash>-<name>)", p, StoreDir())
		}
	}
	if db := storeDBPath(); db != "" {
		if invalid, ok := invalidInDB(ctx, db, paths); ok {
			if len(invalid) == 0 {
				return nil, nil
			}
			// nix-store has the last word on a path the index does not
			// hold: a false "invalid" refuses a derivation Nix is building
			// or replaces an output another build registered meanwhile,
			// and one such answer was seen with many Nix processes writing.
			paths = invalid
		}
	}
	out, err := run(ctx, nil, "nix-store", append([]string{"--check-validity", "--print-invalid"}, paths...)...)
	if err != nil {
		return nil, fmt.Errorf("checking validity of %s: %w", strings.Join(paths, " "), err)
	}
	return lines(out), nil
}

// Delete removes valid store paths (nix-store --delete), which Nix refuses
// while anything still uses them (a GC root, a referrer, a running
// process): a valid path is never replaced in place.
func Delete(ctx context.Context, paths []string) error {
	for _, p := range paths {
		if !IsStorePath(p) {
			return fmt.Errorf("%s is not a store path (expected %s/<hash>-<name>)", p, StoreDir())
		}
	}
	if _, err := run(ctx, nil, "nix-store", append([]string{"--delete"}, paths...)...); err != nil {
		return fmt.Errorf("deleting %s: %w", strings.Join(paths, " "), err)
	}
	return nil
}

// AddGCRoot makes link (e.g. ./result) a symlink to storePath and
// registers it as an indirect garbage-collector root, as nix-build does.
func AddGCRoot(ctx context.Context, storePath, link string) error {
	abs, err := filepath.Abs(link)
	if err != nil {
		return fmt.Errorf("adding GC root %s: %w", link, err)
	}
	if _, err := run(ctx, nil, "nix-store", "--add-root", abs, "--indirect", "--realise", storePath); err != nil {
		return fmt.Errorf("adding GC root %s -> %s: %w", abs, storePath, err)
	}
	return nil
}

// AddValidGCRoot is AddGCRoot for a path that must already be valid: it
// fails, substituting and building nothing, when it is not. A link that
// already points at the path only has the path's validity checked.
func AddValidGCRoot(ctx context.Context, storePath, link string) error {
	abs, err := filepath.Abs(link)
	if err != nil {
		return fmt.Errorf("adding GC root %s: %w", link, err)
	}
	if target, err := os.Readlink(abs); err == nil && target == storePath {
		if valid, err := IsValid(ctx, storePath); err != nil || !valid {
			return fmt.Errorf("%s is not valid", storePath)
		}
		return nil
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a symlink", abs)
	}
	if done, err := addValidRootLocally(ctx, storePath, abs); done {
		return err
	}
	os.Remove(abs)
	if _, err := run(ctx, nil, "nix-store", "--option", "substitute", "false", "--add-root", abs, "--indirect", "--realise", storePath); err != nil {
		return fmt.Errorf("%s is not valid: %w", storePath, err)
	}
	return nil
}

var _ io.Writer = (*tailBuffer)(nil)

// NARSizes returns the NAR size Nix recorded for each of paths (all valid).
func NARSizes(ctx context.Context, paths []string) ([]uint64, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	out, err := run(ctx, nil, "nix-store", append([]string{"-q", "--size"}, paths...)...)
	if err != nil {
		return nil, fmt.Errorf("querying the sizes of %s: %w", strings.Join(paths, " "), err)
	}
	var sizes []uint64
	for _, l := range lines(out) {
		n, err := strconv.ParseUint(l, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("nix-store -q --size printed %q", l)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

package nixstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// flakeFeatures turns on what the flake commands need for one call only:
// Nix 2.4 to (at least) 2.24 keep `nix` itself and flakes experimental, and
// --extra-… adds to the user's nix.conf instead of replacing it.
var flakeFeatures = []string{"--extra-experimental-features", "nix-command flakes"}

// flakeScheme is a flake reference's URL scheme (path:, github:,
// git+https:, flake:, tarball+file:, …).
var flakeScheme = regexp.MustCompile(`^[a-z][a-z0-9]*(\+[a-z]+)?:`)

// IsFlakeRef reports whether arg reads as a flake reference rather than a
// Nix file: it has a fragment (.#hello, /src#pkgs.x) or a URL scheme
// (path:/src, github:owner/repo). A file of that name wins, as Nix's own
// tools would open it.
func IsFlakeRef(arg string) bool {
	if !strings.Contains(arg, "#") && !flakeScheme.MatchString(arg) {
		return false
	}
	_, err := os.Lstat(arg)
	return err != nil
}

// AbsFlakeRef makes a path-like flake reference (./x#y, .#y, a bare
// directory) absolute, so it names the same flake from any directory;
// references with a scheme are kept as given.
func AbsFlakeRef(ref string) string {
	if flakeScheme.MatchString(ref) {
		return ref
	}
	path, frag, hasFrag := strings.Cut(ref, "#")
	if path == "" {
		return ref
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return ref
	}
	if hasFrag {
		return abs + "#" + frag
	}
	return abs
}

// HasFlake reports whether dir holds a flake.nix (and so `nix build` with
// no argument builds its default package).
func HasFlake(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "flake.nix"))
	return err == nil && !fi.IsDir()
}

// flakeArgs are the flake switches of t as `nix build` takes them.
func (t Target) flakeArgs() []string {
	var argv []string
	for _, name := range slices.Sorted(maps.Keys(t.OverrideInputs)) {
		argv = append(argv, "--override-input", name, t.OverrideInputs[name])
	}
	if t.Impure {
		argv = append(argv, "--impure")
	}
	return argv
}

// checkFlake rejects the switches that mean nothing beside a flake
// reference (or a flake switch without one), naming the problem.
func (t Target) checkFlake() error {
	if t.Flake == "" {
		if len(t.OverrideInputs) > 0 || t.Impure {
			return fmt.Errorf("--override-input and --impure apply to flake references (.#hello, path:DIR#hello); %s is a Nix file or expression", t.describe())
		}
		return nil
	}
	switch {
	case t.Expr != "" || t.File != "" || t.Source != nil:
		return fmt.Errorf("both a flake reference (%s) and a Nix file or expression were given; pass one", t.Flake)
	case t.Attr != "":
		return fmt.Errorf("-A %s names an attribute of a Nix file; a flake reference names its package after # (%s#%s)", t.Attr, strings.SplitN(t.Flake, "#", 2)[0], t.Attr)
	case len(t.Args) > 0 || len(t.ArgStrs) > 0:
		return fmt.Errorf("--arg and --argstr apply to Nix files, not to the flake reference %s (a flake takes no arguments; use --override-input or edit the flake)", t.Flake)
	}
	return nil
}

// instantiateFlake evaluates a flake reference to its derivation as `nix
// build` would pick it (packages.<system>.default without a fragment;
// packages.<system>.X, then legacyPackages.<system>.X), without building:
// `nix path-info --derivation` resolves installables exactly as `nix build`
// does.
func instantiateFlake(ctx context.Context, t Target) ([]string, error) {
	if err := t.checkFlake(); err != nil {
		return nil, err
	}
	args := append(slices.Clone(flakeFeatures), "path-info", "--derivation", t.Flake)
	args = append(args, t.flakeArgs()...)
	out, err := run(ctx, nil, "nix", args...)
	if err != nil {
		return nil, fmt.Errorf("evaluating the flake reference %s: %w%s", t.Flake, err, flakeHint(ctx))
	}
	drvs := lines(out)
	if len(drvs) != 1 || !strings.HasSuffix(drvs[0], ".drv") {
		return nil, fmt.Errorf("evaluating the flake reference %s: nix path-info --derivation printed %q, not one derivation", t.Flake, drvs)
	}
	return drvs, nil
}

// flakeHint explains a failure that comes from a Nix without flakes.
func flakeHint(ctx context.Context) string {
	v, err := InstalledNix(ctx)
	if err != nil || v.AtLeast(2, 4) {
		return ""
	}
	return fmt.Sprintf(" (flake references need Nix 2.4 or newer; this is %s)", v)
}

// FlakePackages lists the packages a flake reference (without fragment)
// offers for this system: packages.<system>, or legacyPackages.<system>
// when it has no packages (nixpkgs). For shell completion: it writes no
// lock file.
func FlakePackages(ctx context.Context, flake string) ([]string, error) {
	sys, err := run(ctx, nil, "nix", append(slices.Clone(flakeFeatures), "eval", "--impure", "--raw", "--expr", "builtins.currentSystem")...)
	if err != nil {
		return nil, fmt.Errorf("asking Nix for the system: %w", err)
	}
	for _, output := range []string{"packages", "legacyPackages"} {
		ref := flake + "#" + output + "." + strings.TrimSpace(string(sys))
		out, err := run(ctx, nil, "nix", append(slices.Clone(flakeFeatures), "eval", "--json", "--no-write-lock-file", ref, "--apply", "builtins.attrNames")...)
		if err != nil {
			continue // the flake has no such output
		}
		var names []string
		if err := json.Unmarshal(out, &names); err != nil {
			return nil, fmt.Errorf("listing the packages of %s: %w", flake, err)
		}
		return names, nil
	}
	return nil, fmt.Errorf("%s has neither packages nor legacyPackages for this system", flake)
}

// FileAttrs lists the attribute names under path (dotted, "" for the top)
// of what a Nix file gives (called with no arguments when it is a
// function, as nix-build calls it): the -A values for shell completion.
func FileAttrs(ctx context.Context, file, path string) ([]string, error) {
	names := []string{}
	if path != "" {
		names = strings.Split(path, ".")
	}
	sel, err := json.Marshal(names)
	if err != nil {
		return nil, err
	}
	expr := fmt.Sprintf(`let f = import %s; v = if builtins.isFunction f then f { } else f; at = builtins.foldl' (s: n: s.${n}) v (builtins.fromJSON %s); in if builtins.isAttrs at then builtins.attrNames at else [ ]`,
		strconv.Quote(file), strconv.Quote(string(sel)))
	out, err := run(ctx, nil, "nix-instantiate", "--eval", "--json", "-E", expr)
	if err != nil {
		return nil, fmt.Errorf("listing the attributes of %s: %w", file, err)
	}
	var attrs []string
	if err := json.Unmarshal(out, &attrs); err != nil {
		return nil, fmt.Errorf("listing the attributes of %s: %w", file, err)
	}
	return attrs, nil
}

package nixstore

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BindPath is one entry of Nix's sandbox-paths, read as Nix reads it:
// Source on the host appears at Target in the sandbox.
type BindPath struct {
	Target string
	Source string
	// Optional entries (written with a trailing "?") are dropped when
	// Source does not exist.
	Optional bool
	// Symlink is set when Source is a symlink and the Nix in use copies
	// such a source into the sandbox as a symlink (2.19.5 and later): the
	// link's own target. Older Nix binds what the link points to, and then
	// Source is that resolved path.
	Symlink string
	// StorePath is the store path Source lies in, if any: Nix adds its
	// closure to the sandbox.
	StorePath string
}

// SandboxPaths returns the effective sandbox-paths (including
// extra-sandbox-paths and Nix's built-in default, such as /bin/sh on
// builds of Nix that have a sandbox shell) of the local Nix configuration,
// resolved as the installed Nix resolves them when it sets up a build. It
// asks `nix show-config` (`nix config show` on Nix versions without it);
// if both fail it parses nix.conf ($NIX_CONF_DIR or /etc/nix) and
// $NIX_CONFIG itself, which cannot know the built-in default.
func SandboxPaths(ctx context.Context) ([]BindPath, error) {
	entries, err := sandboxPathEntries(ctx)
	if err != nil {
		return nil, err
	}
	copySymlinks := false
	if v, err := InstalledNix(ctx); err == nil {
		copySymlinks = v.AtLeastPatch(2, 19, 5)
	}
	return ResolveBindPaths(entries, copySymlinks)
}

// nixConfig returns Nix's effective settings as JSON (name → {value}).
func nixConfig(ctx context.Context) (nixSettings, error) {
	out, err := run(ctx, nil, "nix", "--extra-experimental-features", "nix-command", "show-config", "--json")
	if err != nil {
		var err2 error
		if out, err2 = run(ctx, nil, "nix", "--extra-experimental-features", "nix-command", "config", "show", "--json"); err2 != nil {
			return nil, err
		}
	}
	return parseNixConfig(out)
}

type nixSettings map[string]struct {
	Value json.RawMessage `json:"value"`
}

func parseNixConfig(out []byte) (nixSettings, error) {
	var cfg nixSettings
	if err := json.Unmarshal(out, &cfg); err != nil {
		return nil, fmt.Errorf("reading the output of nix show-config --json: %w", err)
	}
	return cfg, nil
}

// decodeSetting decodes one setting; a missing one leaves v alone.
func decodeSetting(cfg nixSettings, name string, v any) error {
	s, ok := cfg[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(s.Value, v); err != nil {
		return fmt.Errorf("reading Nix's setting %s: %w", name, err)
	}
	return nil
}

// NixSetting returns one of Nix's effective settings as Nix reads it
// (nix.conf, includes, $NIX_CONFIG, the user's nix.conf), decoded into v.
func NixSetting(ctx context.Context, name string, v any) (found bool, err error) {
	cfg, err := nixConfig(ctx)
	if err != nil {
		return false, err
	}
	_, found = cfg[name]
	return found, decodeSetting(cfg, name, v)
}

func sandboxPathEntries(ctx context.Context) ([]string, error) {
	var entries []string
	_, err := NixSetting(ctx, "sandbox-paths", &entries)
	if err == nil {
		return entries, nil
	}
	entries, ferr := sandboxPathsFromConfig()
	if ferr != nil {
		return nil, fmt.Errorf("reading sandbox paths: %v; and from the config files: %w", err, ferr)
	}
	return entries, nil
}

// ParseBindPath parses one sandbox-paths entry: "path", "target=source",
// either with a trailing "?" for optional.
func ParseBindPath(entry string) BindPath {
	var b BindPath
	if strings.HasSuffix(entry, "?") {
		b.Optional = true
		entry = strings.TrimSuffix(entry, "?")
	}
	if t, s, ok := strings.Cut(entry, "="); ok {
		b.Target, b.Source = t, s
	} else {
		b.Target, b.Source = entry, entry
	}
	return b
}

// ResolveBindPaths reads sandbox-paths entries as Nix does when it sets up
// a build: a later entry for the same target replaces an earlier one; the
// result is ordered by target (a parent is mounted before what lies in
// it); a source of /proc is skipped (Nix mounts its own); a missing
// optional source is dropped and a missing required one is an error, as
// it fails every Nix build; a symlink source is bound as what it points to
// or, with copySymlinks (Nix 2.19.5 and later), copied as a symlink.
func ResolveBindPaths(entries []string, copySymlinks bool) ([]BindPath, error) {
	byTarget := map[string]BindPath{}
	for _, e := range entries {
		if e == "" {
			continue
		}
		b := ParseBindPath(e)
		byTarget[b.Target] = b
	}
	targets := make([]string, 0, len(byTarget))
	for t := range byTarget {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	res := make([]BindPath, 0, len(targets))
	for _, t := range targets {
		b := byTarget[t]
		if b.Source == "/proc" {
			continue
		}
		fi, err := os.Lstat(b.Source)
		if err != nil {
			if b.Optional && os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("sandbox path %s: %w (Nix fails every sandboxed build with it: fix sandbox-paths, or add \"?\" to make it optional)", b.Target, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if copySymlinks {
				if b.Symlink, err = os.Readlink(b.Source); err != nil {
					return nil, fmt.Errorf("sandbox path %s: %w", b.Target, err)
				}
			} else if b.Source, err = filepath.EvalSymlinks(b.Source); err != nil {
				if b.Optional && os.IsNotExist(err) {
					continue
				}
				return nil, fmt.Errorf("sandbox path %s: %w", b.Target, err)
			}
		}
		if IsStorePath(b.Source) || strings.HasPrefix(b.Source, StoreDir()+"/") {
			b.StorePath = storePathOf(b.Source)
		}
		res = append(res, b)
	}
	return res, nil
}

// storePathOf is the store path a path inside the store belongs to.
func storePathOf(p string) string {
	rest := strings.TrimPrefix(p, StoreDir()+"/")
	name, _, _ := strings.Cut(rest, "/")
	return StoreDir() + "/" + name
}

// sandboxPathsFromConfig reads the sandbox paths from the system
// nix.conf (following includes) and then $NIX_CONFIG.
func sandboxPathsFromConfig() ([]string, error) {
	var paths []string
	err := eachNixConfSetting([]string{systemNixConf()}, func(name string, values []string) {
		switch name {
		case "sandbox-paths", "build-sandbox-paths", "build-chroot-dirs":
			paths = append([]string(nil), values...)
		case "extra-sandbox-paths", "extra-build-sandbox-paths", "extra-build-chroot-dirs":
			paths = append(paths, values...)
		}
	})
	return paths, err
}

// systemNixConf is the system nix.conf ($NIX_CONF_DIR or /etc/nix).
func systemNixConf() string {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	return filepath.Join(dir, "nix.conf")
}

// eachNixConfSetting calls fn with every `name = values…` line of files
// (following includes; a file that does not exist is skipped) and then of
// $NIX_CONFIG, in the order Nix applies them, so a later call overrides an
// earlier one as Nix's does.
func eachNixConfSetting(files []string, fn func(name string, values []string)) error {
	for _, f := range files {
		if err := applyConfigFile(f, fn, 0); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if c := os.Getenv("NIX_CONFIG"); c != "" {
		return applyConfig(c, "$NIX_CONFIG", fn, 0)
	}
	return nil
}

func applyConfigFile(path string, fn func(name string, values []string), depth int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return applyConfig(string(data), path, fn, depth)
}

func applyConfig(text, origin string, fn func(name string, values []string), depth int) error {
	if depth > 10 {
		return fmt.Errorf("%s: includes nested too deeply; check for an include loop", origin)
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] == "include" || f[0] == "!include" {
			if len(f) != 2 {
				return fmt.Errorf("%s: malformed line %q", origin, line)
			}
			inc := f[1]
			if !filepath.IsAbs(inc) {
				inc = filepath.Join(filepath.Dir(origin), inc)
			}
			err := applyConfigFile(inc, fn, depth+1)
			if err != nil && !(f[0] == "!include" && os.IsNotExist(err)) {
				return fmt.Errorf("%s: include %s: %w", origin, inc, err)
			}
			continue
		}
		if len(f) < 2 || f[1] != "=" {
			continue // not a setting we understand; Nix would complain
		}
		fn(f[0], f[2:])
	}
	return sc.Err()
}

// BuildCores is Nix's `cores` setting, which Nix passes to builders as
// NIX_BUILD_CORES unchanged (0 tells the builder to use every CPU); ok is
// false when Nix cannot tell.
func BuildCores(ctx context.Context) (cores int, ok bool) {
	found, err := NixSetting(ctx, "cores", &cores)
	return cores, found && err == nil
}

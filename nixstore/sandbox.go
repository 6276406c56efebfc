package nixstore

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BindPath is one entry of Nix's sandbox-paths: Source on the host is
// bind-mounted at Target in the sandbox; Optional entries (written with
// a trailing "?") are skipped when Source does not exist.
type BindPath struct {
	Target   string
	Source   string
	Optional bool
}

// SandboxPaths returns the effective sandbox-paths (including
// extra-sandbox-paths) of the local Nix configuration. It asks
// `nix show-config`; if that fails it parses nix.conf ($NIX_CONF_DIR or
// /etc/nix) and $NIX_CONFIG itself.
func SandboxPaths(ctx context.Context) ([]BindPath, error) {
	out, err := run(ctx, nil, "nix", "--extra-experimental-features", "nix-command", "show-config", "--json")
	if err == nil {
		var cfg map[string]struct {
			Value json.RawMessage `json:"value"`
		}
		if jerr := json.Unmarshal(out, &cfg); jerr != nil {
			return nil, fmt.Errorf("reading the output of nix show-config --json: %w", jerr)
		}
		var entries []string
		if v, ok := cfg["sandbox-paths"]; ok {
			if jerr := json.Unmarshal(v.Value, &entries); jerr != nil {
				return nil, fmt.Errorf("reading sandbox-paths from nix show-config --json: %w", jerr)
			}
		}
		return parseBindPaths(entries), nil
	}
	entries, ferr := sandboxPathsFromConfig()
	if ferr != nil {
		return nil, fmt.Errorf("reading sandbox paths: %v; and from the config files: %w", err, ferr)
	}
	return parseBindPaths(entries), nil
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

func parseBindPaths(entries []string) []BindPath {
	res := make([]BindPath, 0, len(entries))
	for _, e := range entries {
		if e != "" {
			res = append(res, ParseBindPath(e))
		}
	}
	return res
}

// sandboxPathsFromConfig reads the sandbox paths from the system
// nix.conf (following includes) and then $NIX_CONFIG.
func sandboxPathsFromConfig() ([]string, error) {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	var paths []string
	var set bool
	if err := applyConfigFile(filepath.Join(dir, "nix.conf"), &paths, &set, 0); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if c := os.Getenv("NIX_CONFIG"); c != "" {
		if err := applyConfig(c, "$NIX_CONFIG", &paths, &set, 0); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func applyConfigFile(path string, paths *[]string, set *bool, depth int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return applyConfig(string(data), path, paths, set, depth)
}

func applyConfig(text, origin string, paths *[]string, set *bool, depth int) error {
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
			err := applyConfigFile(inc, paths, set, depth+1)
			if err != nil && !(f[0] == "!include" && os.IsNotExist(err)) {
				return fmt.Errorf("%s: include %s: %w", origin, inc, err)
			}
			continue
		}
		if len(f) < 2 || f[1] != "=" {
			continue // not a setting we understand; Nix would complain
		}
		switch f[0] {
		case "sandbox-paths", "build-sandbox-paths", "build-chroot-dirs":
			*paths = append([]string(nil), f[2:]...)
			*set = true
		case "extra-sandbox-paths", "extra-build-sandbox-paths", "extra-build-chroot-dirs":
			*paths = append(*paths, f[2:]...)
		}
	}
	return sc.Err()
}

// BuildCores is Nix's `cores` setting, which Nix passes to builders as
// NIX_BUILD_CORES unchanged (0 tells the builder to use every CPU); ok is
// false when Nix cannot tell.
func BuildCores(ctx context.Context) (cores int, ok bool) {
	out, err := run(ctx, nil, "nix", "--extra-experimental-features", "nix-command", "show-config", "--json")
	if err != nil {
		return 0, false
	}
	var cfg map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(out, &cfg) != nil {
		return 0, false
	}
	if v, found := cfg["cores"]; found && json.Unmarshal(v.Value, &cores) == nil {
		return cores, true
	}
	return 0, false
}

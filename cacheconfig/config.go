// Package cacheconfig reads a cache's optional config.json: the automatic
// gc's limits, the layer caches' settings, how learning runs and how often
// a resumed result is audited. The engine's build, background work and gc
// read it when they need it, so an edit takes effect at the next build.
package cacheconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nixlayer/nixlayer/layercache"
)

// Config is the cache's optional config.json.
type Config struct {
	GC struct {
		// MaxSize (e.g. "20G") turns on an automatic gc after each build.
		MaxSize  string `json:"maxSize"`
		KeepLast int    `json:"keepLast"`
	} `json:"gc"`

	// The layer caches' settings (layerCaches, pushTo, trustedLayerKeys,
	// secretKeyFile, insecureRegistries, registryTimeout).
	layercache.Config

	// Learn is "background" (the default: a chain's path map is learned
	// after its build, in a detached process) or "concurrent" (a cold
	// build's synthetic twin runs beside it, so the map exists when it
	// ends: worth it with cores to spare).
	Learn string `json:"learn,omitempty"`
	// Audit is how often the background work rebuilds a resumed result
	// from scratch and compares it with the layered one (background/audit.go), the
	// safety net for a layer whose content does not match its key:
	// "always", "never", or "1/N" (one resumed result in N). Unset: "1/20",
	// or "always" when the environment says CI=true.
	Audit string `json:"audit,omitempty"`
}

// Read reads cacheDir/config.json; a missing file is an empty config.
func Read(cacheDir string) (*Config, error) {
	path := filepath.Join(cacheDir, "config.json")
	var c Config
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return &c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// defaultAuditEvery is the audit rate when config.json sets none: one
// resumed result in 20.
const defaultAuditEvery = 20

// AuditEvery is how many resumed results share one audit: 1 audits every
// one, 0 none. CI (CI=true, as CI services set it) audits every one unless
// the config says otherwise: there a wrong result costs most and a clean
// build costs least.
func (c *Config) AuditEvery(getenv func(string) string) (int, error) {
	switch a := strings.TrimSpace(c.Audit); {
	case a == "" && strings.EqualFold(getenv("CI"), "true"):
		return 1, nil
	case a == "":
		return defaultAuditEvery, nil
	case a == "always":
		return 1, nil
	case a == "never":
		return 0, nil
	default:
		one, n, ok := strings.Cut(a, "/")
		every, err := strconv.Atoi(n)
		if !ok || one != "1" || err != nil || every < 1 {
			return 0, fmt.Errorf("config.json audit %q: use \"always\", \"never\" or \"1/N\" (one resumed result in N, e.g. \"1/20\")", c.Audit)
		}
		return every, nil
	}
}

// LearnConcurrent is the config.json "learn" value that runs the synthetic
// twin of a cold build beside it, so the path map exists when the build
// ends: it costs the cores of a second build at the same time.
const LearnConcurrent = "concurrent"

// LearnsConcurrently: config.json says "learn": "concurrent".
func (c *Config) LearnsConcurrently() bool { return c.Learn == LearnConcurrent }

// DefaultDir is /var/cache/nixlayer for root and
// $XDG_CACHE_HOME/nixlayer (~/.cache/nixlayer) for other users, so a user's
// layers never mix with the ones the hook (root) may put in the store.
func DefaultDir() string {
	if d := os.Getenv("NIXLAYER_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/nixlayer"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "nixlayer")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("nixlayer-%d", os.Getuid()))
}

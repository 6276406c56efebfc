package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/ocichain"
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
	// from scratch and compares it with the layered one (audit.go), the
	// safety net for a layer whose content does not match its key:
	// "always", "never", or "1/N" (one resumed result in N). Unset: "1/20",
	// or "always" when the environment says CI=true.
	Audit string `json:"audit,omitempty"`
}

// LayerCache reports whether ref (registry/repo[:tag]) names one of the
// repositories the config's layerCaches lists, and lists them.
func (e *Engine) LayerCache(ref string) (bool, []string, error) {
	cfg, err := e.config()
	if err != nil {
		return false, nil, err
	}
	for _, c := range cfg.LayerCaches {
		if ocichain.SameRepository(ref, c) {
			return true, cfg.LayerCaches, nil
		}
	}
	return false, cfg.LayerCaches, nil
}

// config reads <cache>/config.json; a missing file is an empty config.
func (e *Engine) config() (*Config, error) {
	path := filepath.Join(e.opts.CacheDir, "config.json")
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

// auditEvery is how many resumed results share one audit: 1 audits every
// one, 0 none. CI (CI=true, as CI services set it) audits every one unless
// the config says otherwise: there a wrong result costs most and a clean
// build costs least.
func (c *Config) auditEvery(getenv func(string) string) (int, error) {
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

// learnsConcurrently: config.json says "learn": "concurrent".
func (e *Engine) learnsConcurrently() bool {
	cfg, err := e.config()
	return err == nil && cfg.Learn == LearnConcurrent
}

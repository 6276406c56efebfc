package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/ocichain"
)

// Config is the cache's optional config.json.
type Config struct {
	GC struct {
		// MaxSize (e.g. "20G") turns on an automatic gc after each build.
		MaxSize  string `json:"maxSize"`
		KeepLast int    `json:"keepLast"`
	} `json:"gc"`

	// LayerCaches are OCI repositories (registry/repository) searched, in
	// order, for the phases a build misses, like Nix's substituters.
	LayerCaches []string `json:"layerCaches,omitempty"`
	// PushTo is the repository a build pushes its new chain to (CI sets it).
	PushTo string `json:"pushTo,omitempty"`
	// TrustedLayerKeys are the public keys ("name:base64", Nix's format)
	// whose signature makes a pulled chain usable.
	TrustedLayerKeys []string `json:"trustedLayerKeys,omitempty"`
	// SecretKeyFile signs pushed chains (`nix-store --generate-binary-cache-key`).
	SecretKeyFile string `json:"secretKeyFile,omitempty"`
	// InsecureRegistries are registries (host[:port]) spoken to over plain HTTP.
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
	// RegistryTimeout bounds connecting, each answer and any stall of a
	// transfer (default 10s): a registry that is down costs no more.
	RegistryTimeout string `json:"registryTimeout,omitempty"`
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

// RegistryOptions are a request's switches for layer caches (the CLI's
// --no-check-sigs and --insecure); the rest is the cache's config.json.
type RegistryOptions struct {
	// NoCheckSigs accepts pulled chains no trusted key signed; their layers
	// are marked not verified (results stay out of the Nix store).
	NoCheckSigs bool `json:"noCheckSigs,omitempty"`
	// Insecure talks plain HTTP to every registry (else only to the
	// config's insecureRegistries).
	Insecure bool `json:"insecure,omitempty"`
}

// Restricted reports whether the options use a switch only users Nix
// trusts may give.
func (ro RegistryOptions) Restricted() bool { return ro.NoCheckSigs || ro.Insecure }

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

// registryTimeout is the configured timeout, or the default.
func (c *Config) registryTimeout() (time.Duration, error) {
	if c.RegistryTimeout == "" {
		return ocichain.DefaultTimeout, nil
	}
	d, err := time.ParseDuration(c.RegistryTimeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("config.json registryTimeout %q: use e.g. 10s", c.RegistryTimeout)
	}
	return d, nil
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

// Package layercache moves layer chains between a cache and elsewhere over
// ocichain, the model being Nix's substituters: on a miss a build looks its
// missing phase keys up in the configured layer caches (OCI registries) and
// pulls the longest chain one has before running anything; a cache that is
// down, slow or offers something untrustworthy costs one warning line and
// the build goes on locally. After a build (and after learning a path map)
// the new chain is pushed to pushTo; export and import do the same with an
// OCI layout.
//
// Inputs: what a build wants (Wanted: phase names and keys, which run,
// which are stale here; the outputs), a layer id or a reference, and from
// the engine a Cache (layer store, cache directory, logger, config reader).
// It returns what it pulled; the caller plans again. Where chains come
// from is a Source (a registry or a layout; a fake in tests). Callers: the
// runner (pulls on a miss, pushes after builds, the Engine methods api
// calls); api, daemon and the CLI use its request and result types.
package layercache

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// Cache is what the layer caches need of the engine.
type Cache struct {
	Layers *layers.Store
	// Dir is the cache directory: pulls download and exports stage there.
	Dir string
	Log *zap.Logger
	// Config reads the config's layer-cache settings, at each request
	// (config.json may change between them).
	Config func() (*Config, error)

	// openSource opens a layer cache by its reference (nil: a registry
	// through ocichain); tests give a fake.
	openSource func(ref string, rs *settings) (Source, error)
}

// Config is the layer-cache part of the cache's config.json.
type Config struct {
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

// settings is the config resolved for pulls and pushes.
type settings struct {
	cfg      *Config
	trust    ocichain.Trust
	timeout  time.Duration
	insecure bool // plain HTTP to every registry
}

func (c *Cache) settings(ro RegistryOptions) (*settings, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	trust, err := ocichain.ParseTrust(cfg.TrustedLayerKeys, ro.NoCheckSigs)
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	timeout, err := cfg.registryTimeout()
	if err != nil {
		return nil, err
	}
	return &settings{cfg: cfg, trust: trust, timeout: timeout, insecure: ro.Insecure}, nil
}

func openRegistry(rs *settings, ref string) (*ocichain.Remote, error) {
	insecure := rs.insecure || ocichain.HostIn(ref, rs.cfg.InsecureRegistries)
	return ocichain.OpenRegistry(ref, ocichain.RegistryOptions{Insecure: insecure, Timeout: rs.timeout})
}

func registrySource(rs *settings, ref string) (*ociSource, *ocichain.Remote, error) {
	r, err := openRegistry(rs, ref)
	if err != nil {
		return nil, nil, err
	}
	return &ociSource{name: r.String(), t: r.Target(), res: r.Target(), trust: rs.trust, stall: rs.timeout}, r, nil
}

// source opens the layer cache ref names.
func (c *Cache) source(ref string, rs *settings) (Source, error) {
	if c.openSource != nil {
		return c.openSource(ref, rs)
	}
	src, _, err := registrySource(rs, ref)
	if err != nil {
		return nil, err
	}
	return src, nil
}

// pullTmpPrefix names the directories pulls download into (removed by the
// pull, or by the first process alone with the cache after a crash).
const pullTmpPrefix = "pull-"

// exportTmpPrefix names the layouts ExportTar stages in the cache.
const exportTmpPrefix = ".export-"

// RemoveLeftovers deletes downloads and compressed blobs a killed pull or
// push left; only for a process alone with the cache.
func (c *Cache) RemoveLeftovers() {
	for _, pat := range []string{pullTmpPrefix + "*", ".push-*", exportTmpPrefix + "*"} {
		m, _ := filepath.Glob(filepath.Join(c.Dir, pat))
		for _, p := range m {
			os.RemoveAll(p)
		}
	}
}

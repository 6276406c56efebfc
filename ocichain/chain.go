// Package ocichain moves nixlayer layer chains as OCI content: into and out
// of OCI registries (for teams and CI) and OCI image layouts (export and
// import), through oras-go. A chain travels as an ordinary OCI image — one
// compressed, content-addressed blob per layer — whose config carries the
// records the runner keeps beside each layer (cache key, shell state, output
// paths, path map, log). Pushed chains are signed with a key in Nix's
// binary-cache key format; fetched chains are checked against trusted keys
// and every blob against its digest before anything reaches the layer store,
// and layer tars are screened for hostile entries on the way in.
package ocichain

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixlayer/nixlayer/layers"
)

// LayerMediaType is what nixlayer pushes: zstd-compressed layer tars.
// Fetching accepts gzip and plain tar too (older exports, other tools).
const LayerMediaType = ocispec.MediaTypeImageLayerZstd

// TagPrefix starts the tag of a chain pushed under a phase key, so finding
// the chain that ends in a key is one request.
const TagPrefix = "nl-"

// Annotations and config fields of a nixlayer image.
const (
	annotationSignatures = "io.nixlayer.signatures" // manifest: space-separated key-name:base64 signatures
	annotationKey        = "io.nixlayer.key"        // layer: its cache key
	annotationPhase      = "io.nixlayer.phase"      // layer: its phase
	labelPackage         = "io.nixlayer.package"
	labelDrv             = "io.nixlayer.drv"
)

// maxConfigBytes bounds what a config blob (records, logs, path maps) may
// take in memory; a larger one is refused rather than read.
const maxConfigBytes = 256 << 20

// Record is what a chain carries about one layer besides its tree.
type Record struct {
	Meta layers.Meta `json:"meta"`
	// Data are the layer's named blobs (shell state, log, path map).
	Data map[string][]byte `json:"data,omitempty"`
	// Size is the length of the layer's uncompressed tar: a fetched layer
	// that unpacks to more is refused.
	Size int64 `json:"size"`
}

// Blob is a layer as stored in a registry or layout: its compressed blob
// and the digest of the uncompressed tar (the image's diff_id).
type Blob struct {
	Layer  ocispec.Descriptor `json:"layer"`
	DiffID digest.Digest      `json:"diffID"`
	Size   int64              `json:"size"` // uncompressed
}

// imageConfig is an OCI image config with the chain's records added, so
// the whole chain travels inside the image (registries copy config blobs
// verbatim) and OCI tools still read it as an image.
type imageConfig struct {
	ocispec.Image
	Records []Record `json:"io.nixlayer.layers"`
}

// KeyTag is the tag of the chain that ends in the layer with this key.
func KeyTag(key string) (string, error) {
	if !keyPattern.MatchString(key) {
		return "", fmt.Errorf("%q is not a nixlayer cache key", key)
	}
	return TagPrefix + key, nil
}

var keyPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// decodeConfig reads a chain's config; it returns the records of the
// manifest's layers and those of the layers the whole chain has after them.
func decodeConfig(data []byte, man *ocispec.Manifest) (*imageConfig, []Record, error) {
	var cfg imageConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, nil, fmt.Errorf("image config: %w", err)
	}
	// A prefix of a chain shares the whole chain's config: the records
	// of its own layers come first.
	n := len(man.Layers)
	if len(cfg.Records) < n || len(cfg.RootFS.DiffIDs) != len(cfg.Records) {
		return nil, nil, fmt.Errorf("not a nixlayer image: %d layers but %d records and %d diff_ids", n, len(cfg.Records), len(cfg.RootFS.DiffIDs))
	}
	later := cfg.Records[n:]
	cfg.Records, cfg.RootFS.DiffIDs = cfg.Records[:n], cfg.RootFS.DiffIDs[:n]
	for i, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, nil, fmt.Errorf("diff_id of layer %d: %w", i, err)
		}
	}
	return &cfg, later, nil
}

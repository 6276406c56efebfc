package layercache

import (
	"context"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/nixlayer/nixlayer/ocichain"
)

// Source is where chains are found by phase key: an OCI registry or layout
// through ocichain (a fake in tests). Choosing what to pull only needs
// Lookup; pulling opens and downloads.
type Source interface {
	String() string
	// Lookup finds the chain that ends in the phase with this key (one request).
	Lookup(ctx context.Context, key string) (ocispec.Descriptor, bool, error)
	// Open reads the chain and checks its signature and config digest.
	Open(ctx context.Context, desc ocispec.Descriptor) (*ocichain.Chain, error)
	// Download fetches the blobs of layers idx into dir, digest-checked.
	Download(ctx context.Context, c *ocichain.Chain, idx []int, dir string, progress func(int64)) (map[int]string, error)
}

// ociSource is a registry repository or an OCI layout.
type ociSource struct {
	name  string
	t     content.ReadOnlyStorage
	res   content.Resolver
	trust ocichain.Trust
	// allowUntrusted takes chains no trusted key signed (marked not
	// verified): root's import of a layout, like nix-store --import.
	allowUntrusted bool
	stall          time.Duration
}

func (s *ociSource) String() string { return s.name }

func (s *ociSource) Lookup(ctx context.Context, key string) (ocispec.Descriptor, bool, error) {
	return ocichain.Lookup(ctx, s.res, key)
}

func (s *ociSource) Open(ctx context.Context, desc ocispec.Descriptor) (*ocichain.Chain, error) {
	return ocichain.Open(ctx, s.t, desc, s.trust, s.allowUntrusted)
}

func (s *ociSource) Download(ctx context.Context, c *ocichain.Chain, idx []int, dir string, progress func(int64)) (map[int]string, error) {
	return ocichain.Download(ctx, s.t, c, idx, dir, s.stall, progress)
}

package ocichain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// maxManifestBytes bounds a manifest read into memory.
const maxManifestBytes = 4 << 20

// defaultLayerLimit bounds a layer whose record does not say its size
// (exports from before records carried one).
const defaultLayerLimit = 64 << 30

// ErrUntrusted marks a chain refused for its signature.
var ErrUntrusted = errors.New("untrusted chain")

// Chain is a fetched and checked chain: manifest signature verified (or
// explicitly accepted without one), config digest-checked and decoded.
type Chain struct {
	Desc    ocispec.Descriptor   // the manifest
	Layers  []ocispec.Descriptor // layer blobs, base first
	DiffIDs []digest.Digest
	Records []Record
	// Later are the records of the layers the whole chain has after this
	// prefix (no blobs): what its later phases were built from.
	Later []Record
	// SignedBy is the trusted key that signed the chain; "" when it was
	// accepted without one, and Untrusted then says why it is not trusted.
	SignedBy  string
	Untrusted string
}

// Trusted reports whether a trusted key signed the chain.
func (c *Chain) Trusted() bool { return c.SignedBy != "" }

// LayerLimit is the most bytes layer i may unpack to.
func (c *Chain) LayerLimit(i int) int64 {
	if s := c.Records[i].Size; s > 0 {
		return s
	}
	return defaultLayerLimit
}

// Lookup finds the chain pushed under a phase key: one request.
func Lookup(ctx context.Context, t content.Resolver, key string) (ocispec.Descriptor, bool, error) {
	tag, err := KeyTag(key)
	if err != nil {
		return ocispec.Descriptor{}, false, err
	}
	desc, err := t.Resolve(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return desc, false, nil
	}
	if err != nil {
		return desc, false, err
	}
	return desc, true, nil
}

// Open reads the manifest desc names and its config, and checks the
// signature: a chain no trusted key signed is refused (ErrUntrusted)
// unless trust.NoCheckSigs or allowUntrusted.
func Open(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor, trust Trust, allowUntrusted bool) (*Chain, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s is a %s, not an OCI image manifest", desc.Digest, desc.MediaType)
	}
	if desc.Size > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s is %d bytes, more than a chain's manifest can be", desc.Digest, desc.Size)
	}
	data, err := content.FetchAll(ctx, f, desc)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", desc.Digest, err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(data, &man); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	c := &Chain{Desc: desc, Layers: man.Layers}
	if c.SignedBy, err = trust.verify(&man); err != nil {
		if !trust.NoCheckSigs && !allowUntrusted {
			return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
		}
		c.Untrusted = err.Error()
	}
	if man.Config.Size > maxConfigBytes {
		return nil, fmt.Errorf("the chain's config is %d bytes, more than nixlayer reads (%d)", man.Config.Size, maxConfigBytes)
	}
	cfgData, err := content.FetchAll(ctx, f, man.Config)
	if err != nil {
		return nil, fmt.Errorf("fetching the chain's config %s: %w", man.Config.Digest, err)
	}
	cfg, later, err := decodeConfig(cfgData, &man)
	if err != nil {
		return nil, err
	}
	for i, l := range man.Layers {
		switch l.MediaType {
		case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer:
		default:
			return nil, fmt.Errorf("layer %d has media type %s; nixlayer reads tar layers (plain, gzip, zstd)", i+1, l.MediaType)
		}
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	c.DiffIDs, c.Records, c.Later = cfg.RootFS.DiffIDs, cfg.Records, later
	return c, nil
}

// Download fetches the blobs of the layers idx into dir, each checked
// against its digest and size; progress is told every chunk received. A
// transfer that stalls for stall is aborted. On any error the files
// written so far are removed.
func Download(ctx context.Context, f content.Fetcher, c *Chain, idx []int, dir string, stallAfter time.Duration, progress func(int64)) (map[int]string, error) {
	files := map[int]string{}
	ok := false
	defer func() {
		if !ok {
			for _, p := range files {
				os.Remove(p)
			}
		}
	}()
	for _, i := range idx {
		p := filepath.Join(dir, fmt.Sprintf("layer-%d", i))
		files[i] = p
		if err := download(ctx, f, c.Layers[i], p, stallAfter, progress); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, c.Records[i].Meta.Label(), err)
		}
	}
	ok = true
	return files, nil
}

func download(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor, path string, stallAfter time.Duration, progress func(int64)) error {
	wctx, w := newWatchdog(ctx, stall(stallAfter))
	defer w.stop()
	rc, err := f.Fetch(wctx, desc)
	if err != nil {
		return withCause(wctx, err)
	}
	defer rc.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	vr := content.NewVerifyReader(&touchReader{r: rc, w: w, tick: progress}, desc)
	_, err = io.Copy(out, vr)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = vr.Verify()
	}
	if err != nil {
		if errors.Is(err, content.ErrMismatchedDigest) {
			return digestError{desc.Digest}
		}
		return withCause(wctx, err)
	}
	return nil
}

// digestError is a blob whose content does not match its digest.
type digestError struct{ d digest.Digest }

func (e digestError) Error() string {
	return fmt.Sprintf("blob %s does not match its digest (tampered or corrupt)", e.d)
}

func (e digestError) Is(target error) bool { return target == content.ErrMismatchedDigest }

package ocichain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/archive"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/nixlayer/nixlayer/layers"
)

// Layer is one layer of a chain to push, base first.
type Layer struct {
	Record Record
	// Blob is the layer as pushed or pulled before (nil: never): when the
	// target has it already, nothing is compressed or sent.
	Blob *Blob
	// Diff opens the layer's uncompressed tar (its change against its parent).
	Diff func() (io.ReadCloser, error)
}

// PushOptions say how a chain is tagged and signed.
type PushOptions struct {
	// KeyTags tags every prefix of the chain that ends in a complete layer
	// with a key with KeyTag(key), so a lookup by key finds it.
	KeyTags bool
	// Tag also tags the whole chain (e.g. the package name); "" for none.
	Tag string
	// Key signs every manifest (nil: unsigned).
	Key *signature.SecretKey
	// TmpDir holds compressed blobs before their upload.
	TmpDir string
	// Stall aborts a transfer that makes no progress this long (0: never).
	Stall time.Duration
}

// PushResult says what a push sent.
type PushResult struct {
	Manifest digest.Digest `json:"manifest"` // of the whole chain
	Tags     []string      `json:"tags"`
	// Blobs are the layers as stored there, base first (record them to
	// skip compressing them next time).
	Blobs []Blob `json:"blobs"`
	// LayerBytes is the compressed size of all the chain's layers;
	// Uploaded is what was sent (blobs, configs, manifests).
	LayerBytes    int64 `json:"layerBytes"`
	Uploaded      int64 `json:"uploaded"`
	BlobsSent     int   `json:"blobsSent"`
	BlobsSkipped  int   `json:"blobsSkipped"`
	ManifestsSent int   `json:"manifestsSent"`

	configDone bool // the chain's config is in the target
}

// Push uploads a chain: each layer blob once (existing ones are skipped),
// then a signed manifest per tagged prefix, shortest first, so a chain
// interrupted mid-push is found only as far as it got.
func Push(ctx context.Context, t oras.Target, chain []Layer, o PushOptions) (*PushResult, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("nothing to push: the chain is empty")
	}
	res := &PushResult{}
	for i := range chain {
		b, sent, err := pushLayer(ctx, t, &chain[i], o)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, chain[i].Record.Meta.Label(), err)
		}
		res.Blobs = append(res.Blobs, *b)
		res.LayerBytes += b.Layer.Size
		if sent {
			res.BlobsSent++
			res.Uploaded += b.Layer.Size
		} else {
			res.BlobsSkipped++
		}
	}
	// One config for the whole chain: every prefix manifest refers to it,
	// so the records (logs, path maps) travel once, not once per prefix.
	cfgData, cfgDesc, err := describeConfig(chain, res.Blobs)
	if err != nil {
		return nil, err
	}
	for end := range chain {
		var tags []string
		m := chain[end].Record.Meta
		if o.KeyTags && m.Key != "" && m.Status == layers.StatusComplete {
			tag, err := KeyTag(m.Key)
			if err != nil {
				return nil, err
			}
			tags = append(tags, tag)
		}
		if end == len(chain)-1 && o.Tag != "" {
			tags = append(tags, o.Tag)
		}
		if len(tags) == 0 && end < len(chain)-1 {
			continue
		}
		man := describeManifest(chain[:end+1], res.Blobs[:end+1], cfgDesc)
		desc, err := pushManifest(ctx, t, man, cfgData, tags, o, res)
		if err != nil {
			return nil, err
		}
		res.Tags = append(res.Tags, tags...)
		if end == len(chain)-1 {
			res.Manifest = desc.Digest
		}
	}
	return res, nil
}

// pushLayer makes sure the target has the layer's blob; it reports
// whether it had to send it.
func pushLayer(ctx context.Context, t oras.Target, l *Layer, o PushOptions) (*Blob, bool, error) {
	if l.Blob != nil {
		if ok, err := t.Exists(ctx, l.Blob.Layer); err != nil {
			return nil, false, err
		} else if ok {
			return l.Blob, false, nil
		}
	}
	f, b, err := compress(l, o.TmpDir)
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if ok, err := t.Exists(ctx, b.Layer); err != nil {
		return nil, false, err
	} else if ok {
		return b, false, nil
	}
	wctx, w := newWatchdog(ctx, stall(o.Stall))
	defer w.stop()
	err = t.Push(wctx, b.Layer, &touchReader{r: f, w: w})
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return b, false, nil
	}
	if err != nil {
		return nil, false, withCause(wctx, err)
	}
	return b, true, nil
}

// compress writes the layer's diff, zstd-compressed, to a temporary file
// and describes it.
func compress(l *Layer, tmpDir string) (*os.File, *Blob, error) {
	rc, err := l.Diff()
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(tmpDir, ".push-*")
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*os.File, *Blob, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, nil, err
	}
	compressed := digest.Canonical.Digester()
	zw, err := archive.CompressStream(io.MultiWriter(f, compressed.Hash()), archive.Zstd)
	if err != nil {
		return fail(err)
	}
	diffID := digest.Canonical.Digester()
	n, err := io.Copy(io.MultiWriter(zw, diffID.Hash()), rc)
	if err != nil {
		return fail(fmt.Errorf("reading the layer's diff: %w", err))
	}
	if err := zw.Close(); err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	desc := ocispec.Descriptor{MediaType: LayerMediaType, Digest: compressed.Digest(), Size: size}
	return f, &Blob{Layer: desc, DiffID: diffID.Digest(), Size: n}, nil
}

// pushManifest pushes the config and signed manifest of a prefix and tags
// it; a tag that already names the same manifest costs one request.
func pushManifest(ctx context.Context, t oras.Target, man *ocispec.Manifest, cfgData []byte, tags []string, o PushOptions, res *PushResult) (ocispec.Descriptor, error) {
	if o.Key != nil {
		if err := sign(man, o.Key); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	manData, err := json.Marshal(man)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manData)
	var todo []string
	for _, tag := range tags {
		if cur, err := t.Resolve(ctx, tag); err == nil && cur.Digest == desc.Digest {
			continue
		} else if err != nil && !errors.Is(err, errdef.ErrNotFound) {
			return desc, fmt.Errorf("looking up tag %s: %w", tag, err)
		}
		todo = append(todo, tag)
	}
	if len(todo) == 0 && len(tags) > 0 {
		return desc, nil
	}
	if !res.configDone {
		sent, err := pushBytes(ctx, t, man.Config, cfgData)
		if err != nil {
			return desc, fmt.Errorf("pushing the image config: %w", err)
		}
		if sent {
			res.Uploaded += man.Config.Size
		}
		res.configDone = true
	}
	if len(todo) == 0 {
		if sent, err := pushBytes(ctx, t, desc, manData); err != nil {
			return desc, fmt.Errorf("pushing the manifest: %w", err)
		} else if sent {
			res.Uploaded += desc.Size
			res.ManifestsSent++
		}
		return desc, nil
	}
	for _, tag := range todo {
		if rp, ok := t.(registry.ReferencePusher); ok {
			if err := rp.PushReference(ctx, desc, bytes.NewReader(manData), tag); err != nil {
				return desc, fmt.Errorf("pushing the manifest as %s: %w", tag, err)
			}
		} else {
			if _, err := pushBytes(ctx, t, desc, manData); err != nil {
				return desc, fmt.Errorf("pushing the manifest: %w", err)
			}
			if err := t.Tag(ctx, desc, tag); err != nil {
				return desc, fmt.Errorf("tagging %s: %w", tag, err)
			}
		}
		res.Uploaded += desc.Size
		res.ManifestsSent++
	}
	return desc, nil
}

// pushBytes pushes small content unless the target has it.
func pushBytes(ctx context.Context, t oras.Target, desc ocispec.Descriptor, data []byte) (bool, error) {
	if ok, err := t.Exists(ctx, desc); err != nil {
		return false, err
	} else if ok {
		return false, nil
	}
	err := t.Push(ctx, desc, bytes.NewReader(data))
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return false, nil
	}
	return err == nil, err
}

// describeConfig makes the image config of a whole chain: an OCI image
// config whose records cover every layer. A manifest of a prefix refers to
// the same config and uses the records of its layers; only the whole
// chain's manifest is an image for other tools (diff_ids of all layers).
// Config and manifests are functions of the layers alone (no clock), so
// pushing the same chain again yields the same digests and sends nothing.
func describeConfig(chain []Layer, blobs []Blob) ([]byte, ocispec.Descriptor, error) {
	top := chain[len(chain)-1].Record.Meta
	created := top.Started.UTC()
	cfg := imageConfig{Image: ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   ocispec.ImageConfig{Labels: map[string]string{labelPackage: top.DrvName, labelDrv: top.DrvPath}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}}
	for i, l := range chain {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, blobs[i].DiffID)
		rec := l.Record
		rec.Size = blobs[i].Size
		cfg.Records = append(cfg.Records, rec)
		t := rec.Meta.Started.UTC()
		cfg.History = append(cfg.History, ocispec.History{Created: &t, CreatedBy: "nixlayer " + rec.Meta.Label(), Comment: rec.Meta.DrvPath})
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return data, content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, data), nil
}

// describeManifest makes the (unsigned) manifest of a chain prefix.
func describeManifest(chain []Layer, blobs []Blob, cfg ocispec.Descriptor) *ocispec.Manifest {
	top := chain[len(chain)-1].Record.Meta
	man := &ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      cfg,
		Annotations: map[string]string{ocispec.AnnotationTitle: top.DrvName, ocispec.AnnotationCreated: top.Started.UTC().Format(time.RFC3339)},
	}
	for i, l := range chain {
		d := blobs[i].Layer
		d.Annotations = map[string]string{annotationPhase: l.Record.Meta.Phase}
		if k := l.Record.Meta.Key; k != "" {
			d.Annotations[annotationKey] = k
		}
		man.Layers = append(man.Layers, d)
	}
	return man
}

func stall(d time.Duration) time.Duration {
	if d <= 0 {
		return 24 * time.Hour
	}
	return d
}

// withCause prefers the watchdog's reason to "context canceled".
func withCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(err, context.Canceled) {
		return cause
	}
	return err
}

// touchReader tells the watchdog about every read and counts bytes.
type touchReader struct {
	r    io.Reader
	w    *watchdog
	n    int64
	tick func(int64)
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.w.touch()
		t.n += int64(n)
		if t.tick != nil {
			t.tick(int64(n))
		}
	}
	return n, err
}

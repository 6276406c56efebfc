package layercache

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// ExportResult describes an exported chain.
type ExportResult struct {
	Dir      string   `json:"dir"`
	Ref      string   `json:"ref"`
	Manifest string   `json:"manifest"`
	Layers   []string `json:"layers"` // layer ids, base first
	Phases   []string `json:"phases"`
	Bytes    int64    `json:"bytes"` // compressed layer blobs
	SignedBy string   `json:"signedBy,omitempty"`
}

// Export writes the chain under top as an OCI image layout in dir (one
// zstd-compressed blob per layer, its diff against the parent; the records
// in the image config), tagged ref and signed with secretKey (the key's
// text; default the config's secretKeyFile). Other images already in the
// layout stay.
func (c *Cache) Export(ctx context.Context, top, dir, ref, secretKey string) (*ExportResult, error) {
	rs, err := c.settings(RegistryOptions{})
	if err != nil {
		return nil, err
	}
	key, err := signingKey(rs, secretKey)
	if err != nil {
		return nil, err
	}
	store, err := ocichain.OpenLayout(ctx, dir, true)
	if err != nil {
		return nil, err
	}
	rep, err := c.pushChain(ctx, store, top, ocichain.PushOptions{Tag: ref, Key: key})
	if err != nil {
		return nil, fmt.Errorf("export to %s: %w", dir, err)
	}
	chain, err := layers.WholeChain(c.Layers, top)
	if err != nil {
		return nil, err
	}
	res := &ExportResult{Dir: dir, Ref: ref, Manifest: rep.Manifest.String(), Bytes: rep.LayerBytes, SignedBy: rep.SignedBy}
	for _, l := range chain {
		res.Layers = append(res.Layers, l.ID)
		res.Phases = append(res.Phases, l.Meta.Phase)
	}
	return res, nil
}

// ExportTar exports as Export does into a new layout and writes that
// layout to w as a tar (what `nixlayer daemon` sends a user, who adds it to
// a layout of their own: the daemon writes nothing where a user chooses).
func (c *Cache) ExportTar(ctx context.Context, top string, w io.Writer, ref, secretKey string) (*ExportResult, error) {
	stage, err := os.MkdirTemp(c.Dir, exportTmpPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	res, err := c.Export(ctx, top, stage, ref, secretKey)
	if err != nil {
		return nil, err
	}
	if err := ocichain.WriteLayoutTar(stage, w); err != nil {
		return nil, fmt.Errorf("sending the exported layout: %w", err)
	}
	res.Dir = ""
	return res, nil
}

// ImportResult describes an imported chain.
type ImportResult struct {
	Ref     string   `json:"ref"`
	Layers  int      `json:"layers"`
	Created int      `json:"created"` // new layers
	Reused  int      `json:"reused"`  // layers the cache had already
	Phases  []string `json:"phases"`
	// Verified: a trusted key signed the chain. Otherwise its layers are
	// marked not verified, and results resting on them stay out of the
	// Nix store (like an unsigned nix-store --import, but safer).
	Verified  bool   `json:"verified"`
	SignedBy  string `json:"signedBy,omitempty"`
	Untrusted string `json:"untrusted,omitempty"`
}

// Import recreates the layer chains of an OCI layout exported by nixlayer
// (all tagged images, or the one tagged ref) with their keys, shell state,
// logs and path maps, so the next build resumes from them. Layers are
// digest-checked and screened like pulled ones.
func (c *Cache) Import(ctx context.Context, dir, ref string) ([]ImportResult, error) {
	rs, err := c.settings(RegistryOptions{})
	if err != nil {
		return nil, err
	}
	store, err := ocichain.OpenLayout(ctx, dir, false)
	if err != nil {
		return nil, err
	}
	tags, err := ocichain.LayoutTags(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	src := &ociSource{name: dir, t: store, res: store, trust: rs.trust, allowUntrusted: true}
	var out []ImportResult
	for _, tag := range tags {
		if ref != "" && tag != ref {
			continue
		}
		desc, err := store.Resolve(ctx, tag)
		if err != nil {
			return out, fmt.Errorf("%s:%s: %w", dir, tag, err)
		}
		ch, err := src.Open(ctx, desc)
		if err != nil {
			return out, fmt.Errorf("import %s from %s: %w", tag, dir, err)
		}
		rep, err := c.applyChain(ctx, src, ch, len(ch.Records)-1, func(events.Event) {})
		if err != nil {
			return out, fmt.Errorf("import %s from %s: %w", tag, dir, err)
		}
		out = append(out, ImportResult{Ref: tag, Layers: len(ch.Records), Created: rep.Layers, Reused: rep.Reused, Phases: rep.Phases, Verified: rep.Verified, SignedBy: rep.SignedBy, Untrusted: rep.Untrusted})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no image %q", dir, ref)
	}
	return out, nil
}

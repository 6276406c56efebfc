package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/layers"
)

// OCI image layout media types (image-spec v1.1).
const (
	ociIndexType    = "application/vnd.oci.image.index.v1+json"
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociConfigType   = "application/vnd.oci.image.config.v1+json"
	ociLayerType    = "application/vnd.oci.image.layer.v1.tar"
	ociRefName      = "org.opencontainers.image.ref.name"
	// ociNixlayer is the config field holding what the store keeps beside
	// each layer (metadata, shell state, log), so that the whole chain
	// travels inside the image (a registry copies config blobs verbatim).
	ociNixlayer = "io.nixlayer.layers"
)

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociIndex struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Manifests     []ociDescriptor   `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type ociManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        ociDescriptor     `json:"config"`
	Layers        []ociDescriptor   `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type ociHistory struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by,omitempty"`
	Comment   string    `json:"comment,omitempty"`
}

type ociConfig struct {
	Created      time.Time `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       struct {
		Labels map[string]string `json:"Labels,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History  []ociHistory `json:"history,omitempty"`
	Nixlayer []ociLayer   `json:"io.nixlayer.layers"`
}

// ociLayer is one layer's nixlayer record inside the image config.
type ociLayer struct {
	Meta layers.Meta       `json:"meta"`
	Data map[string][]byte `json:"data,omitempty"`
}

// ExportResult describes an exported chain.
type ExportResult struct {
	Dir      string   `json:"dir"`
	Ref      string   `json:"ref"`
	Manifest string   `json:"manifest"`
	Layers   []string `json:"layers"` // layer ids, base first
	Phases   []string `json:"phases"`
	Bytes    int64    `json:"bytes"` // layer blobs
}

// Export writes the chain under top as an OCI image layout in dir (one
// uncompressed tar blob per layer, its diff against the parent), tagged
// ref. Other images already in the layout stay.
func (e *Engine) Export(top, dir, ref string) (*ExportResult, error) {
	chain, err := e.Chain(top)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("create OCI layout %s: %w", dir, err)
	}
	res := &ExportResult{Dir: dir, Ref: ref}
	var cfg ociConfig
	cfg.Created, cfg.Architecture, cfg.OS = time.Now().UTC(), runtime.GOARCH, "linux"
	cfg.RootFS.Type = "layers"
	cfg.Config.Labels = map[string]string{"io.nixlayer.drv": chain[len(chain)-1].Meta.DrvPath, "io.nixlayer.package": chain[len(chain)-1].Meta.DrvName}
	man := ociManifest{SchemaVersion: 2, MediaType: ociManifestType}
	for _, l := range chain {
		if l.Meta.Status == layers.StatusRunning {
			return nil, fmt.Errorf("layer %s is still being written (a build or shell is running on it)", layers.Short(l.ID))
		}
		rc, err := e.layers.Diff(l.ID)
		if err != nil {
			return nil, err
		}
		d, n, err := writeBlob(dir, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("export layer %s: %w", layers.Short(l.ID), err)
		}
		ann := map[string]string{"io.nixlayer.phase": l.Meta.Phase, "io.nixlayer.status": string(l.Meta.Status)}
		if l.Meta.Key != "" {
			ann["io.nixlayer.key"] = l.Meta.Key
		}
		man.Layers = append(man.Layers, ociDescriptor{MediaType: ociLayerType, Digest: d, Size: n, Annotations: ann})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
		rec := ociLayer{Meta: l.Meta, Data: map[string][]byte{}}
		for _, name := range e.layers.DataNames(l.ID) {
			if b, err := e.layers.Data(l.ID, name); err == nil {
				rec.Data[name] = b
			}
		}
		cfg.Nixlayer = append(cfg.Nixlayer, rec)
		what := l.Meta.Phase
		if what == "" {
			what = l.Meta.Note
		}
		cfg.History = append(cfg.History, ociHistory{Created: l.Created.UTC(), CreatedBy: "nixlayer " + what, Comment: l.Meta.DrvPath})
		res.Layers = append(res.Layers, l.ID)
		res.Phases = append(res.Phases, l.Meta.Phase)
		res.Bytes += n
	}
	cfgDesc, err := writeJSONBlob(dir, ociConfigType, cfg)
	if err != nil {
		return nil, err
	}
	man.Config = cfgDesc
	man.Annotations = map[string]string{"org.opencontainers.image.title": chain[len(chain)-1].Meta.DrvName, "org.opencontainers.image.created": cfg.Created.Format(time.RFC3339)}
	manDesc, err := writeJSONBlob(dir, ociManifestType, man)
	if err != nil {
		return nil, err
	}
	manDesc.Annotations = map[string]string{ociRefName: ref}
	res.Manifest = manDesc.Digest

	idx := ociIndex{SchemaVersion: 2, MediaType: ociIndexType}
	if data, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("%s/index.json is not an OCI index: %w", dir, err)
		}
	}
	var ms []ociDescriptor
	for _, m := range idx.Manifests {
		if m.Annotations[ociRefName] != ref {
			ms = append(ms, m)
		}
	}
	idx.Manifests = append(ms, manDesc)
	if err := writeJSONFile(filepath.Join(dir, "index.json"), idx); err != nil {
		return nil, err
	}
	if err := writeJSONFile(filepath.Join(dir, "oci-layout"), map[string]string{"imageLayoutVersion": "1.0.0"}); err != nil {
		return nil, err
	}
	return res, nil
}

// writeBlob stores r under blobs/sha256 and returns its digest and size.
func writeBlob(dir string, r io.Reader) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(dir, "blobs", "sha256"), ".tmp-")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, err
	}
	hexd := hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "blobs", "sha256", hexd)); err != nil {
		return "", 0, err
	}
	return "sha256:" + hexd, n, nil
}

func writeJSONBlob(dir, mediaType string, v any) (ociDescriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ociDescriptor{}, err
	}
	d, n, err := writeBlob(dir, strings.NewReader(string(data)))
	return ociDescriptor{MediaType: mediaType, Digest: d, Size: n}, err
}

func writeJSONFile(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ImportResult describes an imported chain.
type ImportResult struct {
	Ref     string   `json:"ref"`
	Layers  []string `json:"layers"`
	Created int      `json:"created"` // new layers
	Reused  int      `json:"reused"`  // layers the cache had already (same key)
}

// Import recreates the layer chains of an OCI layout exported by nixlayer
// (all images, or the one tagged ref), with their keys, shell state and
// logs, so the next build resumes from them.
func (e *Engine) Import(dir, ref string) ([]ImportResult, error) {
	var idx ociIndex
	if err := readJSON(filepath.Join(dir, "index.json"), &idx); err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	var out []ImportResult
	for _, m := range idx.Manifests {
		name := m.Annotations[ociRefName]
		if ref != "" && name != ref {
			continue
		}
		r, err := e.importImage(dir, m)
		if err != nil {
			return out, fmt.Errorf("import %s from %s: %w", name, dir, err)
		}
		r.Ref = name
		out = append(out, *r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no image %q", dir, ref)
	}
	return out, nil
}

func (e *Engine) importImage(dir string, md ociDescriptor) (*ImportResult, error) {
	var man ociManifest
	if err := readBlobJSON(dir, md.Digest, &man); err != nil {
		return nil, err
	}
	var cfg ociConfig
	if err := readBlobJSON(dir, man.Config.Digest, &cfg); err != nil {
		return nil, err
	}
	if len(cfg.Nixlayer) != len(man.Layers) || len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return nil, fmt.Errorf("not a nixlayer image: its config has no %s record for every layer", ociNixlayer)
	}
	res := &ImportResult{}
	parent := ""
	for i, ld := range man.Layers {
		rec := cfg.Nixlayer[i]
		if rec.Meta.Key != "" && rec.Meta.Status == layers.StatusComplete {
			if l, ok := e.layers.Lookup(rec.Meta.Key); ok && l.Parent == parent {
				parent = l.ID
				res.Layers = append(res.Layers, l.ID)
				res.Reused++
				continue
			}
		}
		if ld.MediaType != ociLayerType {
			return nil, fmt.Errorf("layer %d has media type %s; nixlayer imports uncompressed tar layers", i, ld.MediaType)
		}
		f, err := openBlob(dir, ld.Digest)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		rec.Meta.Owner = 0
		l, err := e.layers.Import(parent, rec.Meta, io.TeeReader(f, h), rec.Data)
		io.Copy(h, f) // the tar reader may stop before the end padding
		f.Close()
		if err != nil {
			return nil, err
		}
		if err := checkDigest(h, ld.Digest); err != nil {
			e.layers.Delete(l.ID)
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		parent = l.ID
		res.Layers = append(res.Layers, l.ID)
		res.Created++
	}
	return res, nil
}

func checkDigest(h hash.Hash, want string) error {
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("blob digest mismatch: %s, expected %s", got, want)
	}
	return nil
}

func openBlob(dir, digest string) (*os.File, error) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != 64 || strings.ContainsAny(hexd, "/.") {
		return nil, fmt.Errorf("unsupported digest %q", digest)
	}
	f, err := os.Open(filepath.Join(dir, "blobs", "sha256", hexd))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	return f, nil
}

func readBlobJSON(dir, digest string, v any) error {
	f, err := openBlob(dir, digest)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	data, err := io.ReadAll(io.TeeReader(f, h))
	if err != nil {
		return err
	}
	if err := checkDigest(h, digest); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

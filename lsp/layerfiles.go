package lsp

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/buildindex"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/phaserules"
)

// Requests of nixlayer's own that read a layer's tree — the build
// directory and the outputs as a phase left them — for an editor's file
// explorer. Paths are the builder's (/build/…, /nix/store/…). The engine
// reads the layer (root's, or the daemon's for users): the editor needs no
// mount and no rights on the cache. nixlayer.browse and nixlayer.diff name
// the layer of a phase of a document.
const (
	// MethodLayerFiles: params api.LayerFilesRequest, result
	// layertree.Files (the path's metadata, a directory's entries).
	MethodLayerFiles = "nixlayer/layerFiles"
	// MethodReadLayerFile: params api.ReadLayerFileRequest, result
	// layertree.Data (base64 data, at most 4 MiB; read on from
	// offset+length until eof).
	MethodReadLayerFile = "nixlayer/readLayerFile"
	// MethodLayerDiff: params api.LayerDiffRequest, result
	// layertree.Diff (what the phase added, changed, removed against the
	// phase before it).
	MethodLayerDiff = "nixlayer/layerDiff"
)

// Error codes of the layer requests.
const (
	// CodeLayerGone: the layer is no longer in the cache (gc removed it).
	CodeLayerGone jsonrpc2.Code = -32004
	// CodeFileNotFound: the path is not in the layer's tree.
	CodeFileNotFound jsonrpc2.Code = -32005
)

// BrowseResult answers nixlayer.browse: the layer holding the tree a phase
// left, for the layer requests.
type BrowseResult struct {
	Layer   string `json:"layer"`
	Phase   string `json:"phase"`
	Package string `json:"package"` // the derivation's name
	Drv     string `json:"drv"`
	// State is "cached" (the current plan's layer), "failed" (the failed
	// state of the last build) or "earlier" (a layer of an earlier build
	// whose inputs differ).
	State string `json:"state"`
	// Label names the tree for people: "hello-1 · installPhase (failed)".
	Label string `json:"label"`
	// Roots are the directories worth opening: /build and the outputs the
	// phase's tree holds.
	Roots []string `json:"roots"`
	Note  string   `json:"note,omitempty"`
}

// DiffResult answers nixlayer.diff.
type DiffResult struct {
	layertree.Diff
	Label string `json:"label"`
}

// browse finds the layer of a phase of the document's derivation, with
// the roots of its tree that exist (/build, and the outputs made so far).
func (s *server) browse(ctx context.Context, a CommandArgs) (*BrowseResult, error) {
	_, pkg, err := s.pick(a)
	if err != nil {
		return nil, err
	}
	if pkg.Plan == nil {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s has no plan", pkg.Name)
	}
	phase := phaserules.Resolve(phaseNames(pkg), a.Phase)
	if a.Phase == "" || phase == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s has no phase %q (phases: %s)", pkg.Name, a.Phase, phaseList(pkg))
	}
	res := LayerOf(pkg, phase)
	if res == nil {
		return nil, lspError(jsonrpc2.InvalidRequest, "%s of %s has no layer in the cache yet: build it first", phase, pkg.Name)
	}
	// Outputs appear in the phase that creates them (installPhase, mostly).
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	roots := res.Roots[:1]
	for _, r := range res.Roots[1:] {
		_, err := eng.LayerFiles(ctx, api.LayerFilesRequest{Layer: res.Layer, Path: r})
		switch {
		case err == nil:
			roots = append(roots, r)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, layerError(err)
		}
	}
	res.Roots = roots
	return res, nil
}

func phaseList(pkg *Package) string { return strings.Join(phaseNames(pkg), " ") }

// LayerOf picks the layer whose tree shows what phase left: the failed
// state when the derivation's last build failed there, else the plan's
// cached layer, else the newest layer an earlier build of the package
// made of the phase. nil when there is none.
func LayerOf(pkg *Package, phase string) *BrowseResult {
	res := &BrowseResult{Phase: phase, Package: pkg.Name, Drv: pkg.DrvPath, Roots: []string{"/build"}}
	for _, name := range slices.Sorted(maps.Keys(pkg.Plan.Outputs)) {
		res.Roots = append(res.Roots, pkg.Plan.Outputs[name])
	}
	if f := pkg.Failure; f != nil && f.Phase == phase && f.Layer != "" {
		res.Layer, res.State = f.Layer, "failed"
	}
	for _, ph := range pkg.Plan.Phases {
		if res.Layer == "" && ph.Name == phase && ph.Layer != nil {
			res.Layer, res.State = ph.Layer.ID, "cached"
		}
	}
	for i := len(pkg.History) - 1; i >= 0 && res.Layer == ""; i-- {
		if r := pkg.History[i]; r.Phase == phase && r.Layer != "" && r.Status != buildindex.RunInterrupted {
			res.Layer, res.State = r.Layer, "earlier"
			res.Note = "the current derivation has no layer after " + phase + "; this one is from an earlier build (" + r.Drv + ") whose inputs differ"
		}
	}
	if res.Layer == "" {
		return nil
	}
	res.Label = pkg.Name + " · " + phase
	if res.State != "cached" {
		res.Label += " (" + res.State + ")"
	}
	return res
}

func (s *server) diff(ctx context.Context, a CommandArgs) (*DiffResult, error) {
	b, err := s.browse(ctx, a)
	if err != nil {
		return nil, err
	}
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	d, err := eng.LayerDiff(ctx, api.LayerDiffRequest{Layer: b.Layer})
	if err != nil {
		return nil, layerError(err)
	}
	return &DiffResult{Diff: *d, Label: b.Label}, nil
}

// layerRequest answers the layer requests (thin: the engine does the work).
func (s *server) layerRequest(ctx context.Context, method string, raw json.RawMessage) (any, error) {
	eng, err := s.getEngine()
	if err != nil {
		return nil, err
	}
	var p struct {
		api.ReadLayerFileRequest // a superset of the three requests' params
	}
	if err := decode(raw, &p); err != nil {
		return nil, err
	}
	if p.Layer == "" {
		return nil, lspError(jsonrpc2.InvalidParams, "%s needs a layer (from nixlayer.browse)", method)
	}
	var res any
	switch method {
	case MethodLayerFiles:
		res, err = eng.LayerFiles(ctx, api.LayerFilesRequest{Layer: p.Layer, Path: p.Path})
	case MethodReadLayerFile:
		res, err = eng.ReadLayerFile(ctx, p.ReadLayerFileRequest)
	case MethodLayerDiff:
		res, err = eng.LayerDiff(ctx, api.LayerDiffRequest{Layer: p.Layer})
	}
	if err != nil {
		return nil, layerError(err)
	}
	return res, nil
}

// layerError gives the two errors an explorer tells apart their codes.
func layerError(err error) error {
	var gone *layertree.GoneError
	switch {
	case errors.As(err, &gone):
		return jsonrpc2.NewError(CodeLayerGone, err.Error())
	case errors.Is(err, fs.ErrNotExist):
		return jsonrpc2.NewError(CodeFileNotFound, err.Error())
	}
	return err
}

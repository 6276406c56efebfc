package runner

import (
	"context"
	"io"

	"github.com/nixlayer/nixlayer/build"
	"github.com/nixlayer/nixlayer/cacheconfig"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/ocichain"
	"github.com/nixlayer/nixlayer/planner"
)

// The engine's side of the layer caches (package layercache): what a plan
// wants of them, and a new plan after a pull.

// Pull pulls the longest chain ref's repository holds for the phases of
// drvPath this cache misses (looked up by key); with a tag in ref, the
// longest prefix of that chain whose keys this build computes.
func (e *Engine) Pull(ctx context.Context, drvPath, ref string, ro layercache.RegistryOptions, progress func(events.Event)) (*layercache.PullReport, error) {
	j, err := e.run.Prepare(ctx, drvPath, nil)
	if err != nil {
		return nil, err
	}
	plan, err := e.plans.Plan(j, planner.Options{})
	if err != nil {
		return nil, err
	}
	return e.caches.Pull(ctx, build.Wanted(j, plan, nil), ref, ro, progress)
}

// Push uploads the chain that ends in top to ref (layercache.Cache.Push).
func (e *Engine) Push(ctx context.Context, top, ref string, o layercache.PushOptions) (*layercache.PushReport, error) {
	return e.caches.Push(ctx, top, ref, o)
}

// Export writes the chain under top as an OCI layout in dir
// (layercache.Cache.Export).
func (e *Engine) Export(ctx context.Context, top, dir, ref, secretKey string) (*layercache.ExportResult, error) {
	return e.caches.Export(ctx, top, dir, ref, secretKey)
}

// ExportTar exports the chain under top as a layout archive written to w
// (layercache.Cache.ExportTar).
func (e *Engine) ExportTar(ctx context.Context, top string, w io.Writer, ref, secretKey string) (*layercache.ExportResult, error) {
	return e.caches.ExportTar(ctx, top, w, ref, secretKey)
}

// Import recreates the chains of an OCI layout (layercache.Cache.Import).
func (e *Engine) Import(ctx context.Context, dir, ref string) ([]layercache.ImportResult, error) {
	return e.caches.Import(ctx, dir, ref)
}

// LayerCache reports whether ref (registry/repo[:tag]) names one of the
// repositories the config's layerCaches lists, and lists them.
func (e *Engine) LayerCache(ref string) (bool, []string, error) {
	cfg, err := cacheconfig.Read(e.opts.CacheDir)
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

package runner

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nixlayer/nixlayer/cacheconfig"
	"github.com/nixlayer/nixlayer/cachelock"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/internal/proc"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/results"
)

// GC removes layers by gc's policy, never one in use: a phase running, a
// layer mounted (a build's reused chain, a shell, a view, `nixlayer
// mount`), a package a build is running for, a pending result's layers.
func (e *Engine) GC(ctx context.Context, o gc.Options) (*gc.Result, error) {
	unlock, err := e.locks.Exclusive(ctx, cachelock.Removal, "", func() {
		fmt.Fprintln(cmp.Or(o.Log, io.Discard), "nixlayer: waiting for another gc, or builds choosing the layers they reuse, to finish")
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := e.layers.List()
	if err != nil {
		return nil, err
	}
	busy := e.busyPackages()
	var inUse []string
	for _, l := range all {
		if (l.Meta.Status == layers.StatusRunning && proc.Alive(l.Meta.Owner)) || e.layers.MountCount(l.ID) > 0 || busy[l.Meta.DrvName] {
			inUse = append(inUse, l.ID)
		}
	}
	// A provisional result's layers wait for the background work to settle it.
	if recs, err := results.List(e.opts.CacheDir); err == nil {
		for _, r := range recs {
			if r.State.Pending() {
				inUse = append(inUse, r.Top, r.RewriteLayer)
				inUse = append(inUse, r.Created...)
			}
		}
	}
	return gc.Collect(e.layers, all, inUse, o)
}

// busyPackages names the packages a build is running for right now (their
// derivation lock is held): none of their layers may go, since the build
// may be about to reuse any of them.
func (e *Engine) busyPackages() map[string]bool {
	busy := map[string]bool{}
	for _, drvPath := range e.locks.Held(cachelock.Derivation) {
		if _, name, ok := nixstore.SplitStorePath(drvPath); ok {
			busy[strings.TrimSuffix(name, ".drv")] = true
		}
	}
	return busy
}

// AutoGC applies the size limit of the cache's config.json, if any; builds
// call it when they end. It returns nil, nil when no limit is configured.
func (e *Engine) AutoGC(ctx context.Context) (*gc.Result, error) {
	c, err := cacheconfig.Read(e.opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if c.GC.MaxSize == "" {
		return nil, nil
	}
	max, err := gc.ParseSize(c.GC.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("config.json gc.maxSize: %w", err)
	}
	return e.GC(ctx, gc.Options{KeepLast: c.GC.KeepLast, MaxSize: max})
}

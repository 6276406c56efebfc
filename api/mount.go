package api

import (
	"context"
	"io"

	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layertree"
)

// Host mounts (`nixlayer mount`, `nixlayer umount`) are root's, on its own
// machine: they are not part of Service, so no client of the daemon
// reaches them.

// Select finds the layer after phase at of pkg, as Local's user sees the
// cache (runner.Engine.Select).
func (l *Local) Select(ctx context.Context, pkg inspect.Package, at string, log io.Writer) (*inspect.Selected, error) {
	return l.e.Select(ctx, pkg, at, log, l.viewer())
}

// Mounts lists the layers mounted on the host.
func (l *Local) Mounts() ([]layertree.MountRecord, error) { return l.e.Trees().Mounts() }

// Mount mounts a selected layer read-only on dir ("": its default
// directory).
func (l *Local) Mount(sel *inspect.Selected, dir string) (*layertree.MountRecord, error) {
	if dir == "" {
		dir = l.e.Trees().DefaultMountDir(sel.Layer, sel.Phase)
	}
	return l.e.Trees().Mount(sel.Layer, sel.Phase, dir)
}

// Unmount releases a host mount.
func (l *Local) Unmount(dir string) error { return l.e.Trees().Unmount(dir) }

package build

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/nixstore/storetree"
	"github.com/nixlayer/nixlayer/phaserun"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/results"
)

// Deliver puts the outputs where the user finds them: into the Nix store
// when every layer matched its key, else into the cache.
func (b *Builder) Deliver(ctx context.Context, j *phaserun.Job, res *Result, bo BuildOptions, progress func(events.Event)) error {
	root, err := b.Layers.Mount(res.TopLayer)
	if err != nil {
		return err
	}
	defer b.Layers.Unmount(res.TopLayer)
	trees := map[string]string{}
	for name, p := range j.Drv.Outputs {
		tree := filepath.Join(root, "store", filepath.Base(p))
		if _, err := os.Lstat(tree); err != nil {
			return fmt.Errorf("builder for '%s' failed to produce output path for output '%s' at '%s'", j.Drv.Path, name, p)
		}
		trees[p] = tree
	}
	if err := phaserun.CheckReferences(ctx, j, trees); err != nil {
		return err
	}
	res.Outputs = map[string]string{}
	if res.Verified && bo.Deliver && os.Geteuid() == 0 {
		var opts []storetree.DeliverOption
		if bo.LocksHeld {
			opts = append(opts, storetree.LocksHeldByCaller())
		}
		if err := storetree.Deliver(ctx, trees, j.Drv.Path, j.Closure, opts...); err != nil {
			return fmt.Errorf("registering the outputs of %s: %w", j.Drv.Name, err)
		}
		res.InStore = true
		fault.Point(fault.AfterRegister)
		for name, p := range j.Drv.Outputs {
			res.Outputs[name] = p
			if bo.ResultLink != "" {
				RemoveLink(linkName(bo.ResultLink, name))
				if err := nixstore.AddGCRoot(ctx, p, linkName(bo.ResultLink, name)); err != nil {
					return err
				}
			}
		}
		progress(events.Event{Kind: events.EventDeliver, Message: "outputs registered in the Nix store"})
		return nil
	}
	// Outside the store: a copy in the cache, canonical like a store path.
	dir := b.ResultsDir(bo.ResultsDir)
	for name, p := range j.Drv.Outputs {
		dst := filepath.Join(dir, filepath.Base(p))
		if err := replaceTree(trees[p], dst, bo.ResultOwner); err != nil {
			return fmt.Errorf("copying output %s of %s into the cache: %w", name, j.Drv.Name, err)
		}
		res.Outputs[name] = dst
		if bo.ResultLink != "" {
			link := linkName(bo.ResultLink, name)
			RemoveLink(link)
			if err := os.Symlink(dst, link); err != nil {
				return fmt.Errorf("creating %s: %w", link, err)
			}
		}
	}
	progress(events.Event{Kind: events.EventDeliver, Message: "result kept outside the Nix store (not verified)"})
	return nil
}

// linkName follows nix-build: result, result-dev, result-lib, ….
func linkName(base, output string) string {
	if output == "out" {
		return base
	}
	return base + "-" + output
}

// stagingDir is where a results directory's copies are made before they
// take their place: private to the engine's user, so nobody else sees or
// changes a half-made copy.
const stagingDir = ".staging"

// replaceTree puts a canonical copy of src at dst, a results directory's
// entry. The copy is made in the directory's staging directory and renamed
// into place; for an owner (the daemon's caller) only its top is handed
// over, readable by that user alone (0500, or 0400/0500 for a file), and
// the tree beneath stays root's: what the user can read, nothing root
// later touches is theirs to swap.
func replaceTree(src, dst string, owner *results.Owner) error {
	staging, err := privateDir(filepath.Join(filepath.Dir(dst), stagingDir))
	if err != nil {
		return err
	}
	tmp := filepath.Join(staging, filepath.Base(dst))
	if err := storetree.RemoveTree(tmp); err != nil {
		return err
	}
	if err := storetree.CopyTree(src, tmp); err != nil {
		return err
	}
	if err := storetree.Canonicalise(tmp); err != nil {
		return err
	}
	if owner != nil {
		if err := handOver(tmp, owner); err != nil {
			return err
		}
	}
	if err := storetree.RemoveTree(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// privateDir makes dir a directory of this process's user, 0700. Whatever
// else is there (a symlink an earlier user-owned results directory held)
// is removed, never followed.
func privateDir(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	fi, err := os.Lstat(dir)
	if err == nil {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if fi.IsDir() && fi.Mode().Perm() == 0o700 && ok && int(st.Uid) == os.Geteuid() {
			return dir, nil
		}
		if err := storetree.RemoveTree(dir); err != nil {
			return "", err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// handOver gives the top of a canonical result to its user, private:
// nobody else may enter or read it.
func handOver(top string, o *results.Owner) error {
	fi, err := os.Lstat(top)
	if err != nil {
		return err
	}
	if err := os.Lchown(top, o.UID, o.GID); err != nil {
		return fmt.Errorf("handing %s to uid %d: %w", top, o.UID, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil
	}
	// Not a symlink, in a directory only root may enter: chmod cannot be led elsewhere.
	return os.Chmod(top, fi.Mode().Perm()&0o500)
}

// RemoveLink replaces an earlier result link, as nix-build does; anything
// that is not a symlink is left alone (and the link creation then fails).
func RemoveLink(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(path)
	}
}

// buildWithNix leaves a fixed-output derivation to Nix, which fetches it and
// checks its hash; there is nothing to layer in a download.
func (b *Builder) buildWithNix(ctx context.Context, j *phaserun.Job, bo BuildOptions, progress func(events.Event), start time.Time) (*Result, error) {
	progress(events.Event{Kind: events.EventDeliver, Message: "fixed-output derivation: built by Nix, which checks its hash"})
	if err := nixstore.Realise(nixstore.WithLog(ctx, cmp.Or(bo.Log, io.Discard)), j.Drv.Path); err != nil {
		return nil, err
	}
	res := &Result{Plan: &planner.Plan{Drv: j.Drv.Path, Name: j.Drv.Name, Outputs: j.Drv.Outputs, Whole: true, WhyWhole: "fixed-output derivation (built by Nix)"}, Outputs: map[string]string{}, InStore: true, Verified: true}
	for name, p := range j.Drv.Outputs {
		res.Outputs[name] = p
		if bo.ResultLink != "" {
			RemoveLink(linkName(bo.ResultLink, name))
			if err := nixstore.AddGCRoot(ctx, p, linkName(bo.ResultLink, name)); err != nil {
				return nil, err
			}
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// AlreadyBuilt returns the outputs of a derivation whose outputs are all
// valid in the Nix store (ok false otherwise), with the result links made
// as nix-build makes them: a built version comes back without preparing a
// sandbox or opening the layer store.
func AlreadyBuilt(ctx context.Context, drvPath, resultLink string) (outputs map[string]string, ok bool, err error) {
	d, err := drv.Read(drvPath)
	if err != nil {
		return nil, false, err
	}
	var paths []string
	for _, p := range d.Outputs {
		if _, err := os.Lstat(p); err != nil {
			return nil, false, nil // not built: no query at all
		}
		paths = append(paths, p)
	}
	if resultLink == "" {
		valid, err := nixstore.AllValid(ctx, paths)
		return d.Outputs, valid, err
	}
	// Linking valid paths is the validity check: one query per output.
	for name, p := range d.Outputs {
		link := linkName(resultLink, name)
		if err := nixstore.AddValidGCRoot(ctx, p, link); err != nil {
			return nil, false, nil
		}
	}
	return d.Outputs, true, nil
}

// BuiltResult is the result of a derivation whose outputs are valid in the
// Nix store (AlreadyBuilt).
func BuiltResult(outputs map[string]string) *Result {
	return &Result{Outputs: outputs, InStore: true, Verified: true, State: events.StateVerified, Why: "already built: its outputs are valid in the Nix store"}
}

// ResultsDir is where results outside the store go: dir, or the cache's.
func (b *Builder) ResultsDir(dir string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(b.CacheDir, "results")
}

package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/nixstore"
)

// deliver puts the outputs where the user finds them: into the Nix store
// when every layer matched its key, else into the cache.
func (e *Engine) deliver(ctx context.Context, j *job, res *Result, bo BuildOptions, progress func(Event)) error {
	root, err := e.layers.Mount(res.TopLayer)
	if err != nil {
		return err
	}
	defer e.layers.Unmount(res.TopLayer)
	trees := map[string]string{}
	for name, p := range j.drv.Outputs {
		tree := filepath.Join(root, "store", filepath.Base(p))
		if _, err := os.Lstat(tree); err != nil {
			return fmt.Errorf("builder for '%s' failed to produce output path for output '%s' at '%s'", j.drv.Path, name, p)
		}
		trees[p] = tree
	}
	if err := checkReferences(ctx, j, trees); err != nil {
		return err
	}
	res.Outputs = map[string]string{}
	if res.Verified && bo.Deliver && os.Geteuid() == 0 {
		var opts []nixstore.DeliverOption
		if bo.LocksHeld {
			opts = append(opts, nixstore.LocksHeldByCaller())
		}
		if err := nixstore.Deliver(ctx, trees, j.drv.Path, j.closure, opts...); err != nil {
			return fmt.Errorf("registering the outputs of %s: %w", j.drv.Name, err)
		}
		res.InStore = true
		fault.Point(fault.AfterRegister)
		for name, p := range j.drv.Outputs {
			res.Outputs[name] = p
			if bo.ResultLink != "" {
				removeLink(linkName(bo.ResultLink, name))
				if err := nixstore.AddGCRoot(ctx, p, linkName(bo.ResultLink, name)); err != nil {
					return err
				}
			}
		}
		progress(Event{Kind: EventDeliver, Message: "outputs registered in the Nix store"})
		return nil
	}
	// Outside the store: a copy in the cache, canonical like a store path.
	dir := e.resultsDir(bo.ResultsDir)
	for name, p := range j.drv.Outputs {
		dst := filepath.Join(dir, filepath.Base(p))
		if err := replaceTree(trees[p], dst); err != nil {
			return fmt.Errorf("copying output %s of %s into the cache: %w", name, j.drv.Name, err)
		}
		if o := bo.ResultOwner; o != nil {
			if err := chownTree(dst, o.UID, o.GID); err != nil {
				return fmt.Errorf("handing output %s of %s to uid %d: %w", name, j.drv.Name, o.UID, err)
			}
		}
		res.Outputs[name] = dst
		if bo.ResultLink != "" {
			link := linkName(bo.ResultLink, name)
			removeLink(link)
			if err := os.Symlink(dst, link); err != nil {
				return fmt.Errorf("creating %s: %w", link, err)
			}
		}
	}
	progress(Event{Kind: EventDeliver, Message: "result kept outside the Nix store (not verified)"})
	return nil
}

// linkName follows nix-build: result, result-dev, result-lib, ….
func linkName(base, output string) string {
	if output == "out" {
		return base
	}
	return base + "-" + output
}

func replaceTree(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	makeWritable(tmp)
	os.RemoveAll(tmp)
	if err := copyTree(src, tmp); err != nil {
		return err
	}
	if err := nixstore.Canonicalise(tmp); err != nil {
		return err
	}
	makeWritable(dst)
	os.RemoveAll(dst)
	return os.Rename(tmp, dst)
}

func makeWritable(root string) {
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case fi.IsDir():
			return os.MkdirAll(target, 0o755)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, fi.Mode().Perm()|0o200)
		}
	})
}

// removeLink replaces an earlier result link, as nix-build does; anything
// that is not a symlink is left alone (and the link creation then fails).
func removeLink(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(path)
	}
}

// buildWithNix leaves a fixed-output derivation to Nix, which fetches it and
// checks its hash; there is nothing to layer in a download.
func (e *Engine) buildWithNix(ctx context.Context, j *job, bo BuildOptions, progress func(Event), start time.Time) (*Result, error) {
	progress(Event{Kind: EventDeliver, Message: "fixed-output derivation: built by Nix, which checks its hash"})
	if err := nixstore.Realise(nixstore.WithLog(ctx, orDiscard(bo.Log)), j.drv.Path); err != nil {
		return nil, err
	}
	res := &Result{Plan: &Plan{Drv: j.drv.Path, Name: j.drv.Name, Outputs: j.drv.Outputs, Whole: true, WhyWhole: "fixed-output derivation (built by Nix)"}, Outputs: map[string]string{}, InStore: true, Verified: true}
	for name, p := range j.drv.Outputs {
		res.Outputs[name] = p
		if bo.ResultLink != "" {
			removeLink(linkName(bo.ResultLink, name))
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
	return &Result{Outputs: outputs, InStore: true, Verified: true, State: StateVerified, Why: "already built: its outputs are valid in the Nix store"}
}

// resultsDir is where results outside the store go: dir, or the cache's.
func (e *Engine) resultsDir(dir string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(e.opts.CacheDir, "results")
}

// chownTree gives a result tree to its user (symlinks themselves too).
func chownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/internal/proc"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/results"
)

// GCOptions is the removal policy. A chain is a build: a layer nothing
// else builds on (its top) with the layers under it.
type GCOptions struct {
	// KeepLast keeps the newest N chains of each package (default 1).
	KeepLast int
	// OlderThan also removes kept chains whose top is older than this.
	OlderThan time.Duration
	// MaxSize then removes the oldest remaining chains until the layers
	// take at most this many bytes on disk (0: no limit).
	MaxSize int64
	DryRun  bool
	Log     io.Writer
}

// GCResult says what gc removed.
type GCResult struct {
	Removed []GCLayer `json:"removed"`
	// Freed is the disk space the removed layers took (as du counts it).
	Freed int64 `json:"freed"`
	// InUse are layers that policy would remove but a running build, an
	// open shell or a mount uses.
	InUse     []string `json:"inUse,omitempty"`
	Kept      int      `json:"kept"`
	KeptBytes int64    `json:"keptBytes"`
	DryRun    bool     `json:"dryRun,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// GCLayer is one removed layer.
type GCLayer struct {
	ID      string `json:"id"`
	Package string `json:"package"`
	Phase   string `json:"phase,omitempty"`
	Status  string `json:"status"`
	Bytes   int64  `json:"bytes"`
}

// GC removes layers by policy, never one in use.
func (e *Engine) GC(ctx context.Context, o GCOptions) (*GCResult, error) {
	if o.KeepLast <= 0 {
		o.KeepLast = 1
	}
	unlock, err := e.lockFile(ctx, removalLock, "", func() {
		fmt.Fprintln(orDiscard(o.Log), "nixlayer: waiting for another gc, or builds choosing the layers they reuse, to finish")
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := e.layers.List()
	if err != nil {
		return nil, err
	}
	tree := layers.NewTree(all)
	// withAncestors adds l and every layer under it to set.
	withAncestors := func(set map[string]bool, l *layers.Layer) {
		tree.Down(l, func(l *layers.Layer) bool {
			if set[l.ID] {
				return false
			}
			set[l.ID] = true
			return true
		})
	}

	busy := e.busyPackages()
	pinned := map[string]bool{}
	for _, l := range all {
		if (l.Meta.Status == layers.StatusRunning && proc.Alive(l.Meta.Owner)) || e.layers.MountCount(l.ID) > 0 || busy[l.Meta.DrvName] {
			withAncestors(pinned, l)
		}
	}
	// A provisional result's layers wait for the background work to settle it.
	if recs, err := results.List(e.opts.CacheDir); err == nil {
		for _, r := range recs {
			if r.State.Pending() {
				for _, id := range append([]string{r.Top, r.RewriteLayer}, r.Created...) {
					withAncestors(pinned, tree.Get(id))
				}
			}
		}
	}

	// Chains per package, newest top first.
	tops := map[string][]*layers.Layer{}
	for _, l := range all {
		// A stale chain (an audit dropped it) is never one worth keeping.
		if len(tree.Children(l.ID)) == 0 && l.Meta.Status != layers.StatusStale {
			tops[l.Meta.DrvName] = append(tops[l.Meta.DrvName], l)
		}
	}
	var kept []*layers.Layer
	cutoff := time.Now().Add(-o.OlderThan)
	for _, ts := range tops {
		sort.Slice(ts, func(a, b int) bool { return ts[a].Created.After(ts[b].Created) })
		for i, t := range ts {
			if i < o.KeepLast && (o.OlderThan == 0 || t.Created.After(cutoff)) {
				kept = append(kept, t)
			}
		}
	}
	usage := map[string]int64{}
	du := func(id string) int64 {
		if n, ok := usage[id]; ok {
			return n
		}
		usage[id] = e.layers.DiskUsage(id)
		return usage[id]
	}
	keepSet := func() map[string]bool {
		set := map[string]bool{}
		for _, t := range kept {
			withAncestors(set, t)
		}
		return set
	}
	keep := keepSet()
	if o.MaxSize > 0 {
		// Oldest chains go first until the rest fits.
		sort.Slice(kept, func(a, b int) bool { return kept[a].Created.After(kept[b].Created) })
		for len(kept) > 0 {
			var total int64
			for _, l := range all {
				if keep[l.ID] || pinned[l.ID] {
					total += du(l.ID)
				}
			}
			if total <= o.MaxSize {
				break
			}
			kept = kept[:len(kept)-1]
			keep = keepSet()
		}
	}

	fault.Point(fault.GCDecided)
	res := &GCResult{DryRun: o.DryRun}
	for i := len(all) - 1; i >= 0; i-- { // newest (children) first
		l := all[i]
		if keep[l.ID] {
			res.Kept++
			res.KeptBytes += du(l.ID)
			continue
		}
		if pinned[l.ID] {
			res.InUse = append(res.InUse, l.ID)
			res.Kept++
			res.KeptBytes += du(l.ID)
			continue
		}
		n := du(l.ID)
		if !o.DryRun {
			if err := e.layers.Delete(l.ID); err != nil {
				res.Errors = append(res.Errors, err.Error())
				continue
			}
		}
		res.Freed += n
		res.Removed = append(res.Removed, GCLayer{ID: l.ID, Package: l.Meta.DrvName, Phase: l.Meta.Phase, Status: rowStatus(l), Bytes: n})
	}
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("gc could not remove %d layer(s): %s", len(res.Errors), strings.Join(res.Errors, "; "))
	}
	return res, nil
}

// removalLock is held exclusively while layers are removed (gc, dropped
// attempts) and shared while a build chooses the chain it reuses and
// mounts it (pinChain): a chain is never removed between its choice and
// its use, and what is removed is never chosen.
const removalLock = "gc"

// pinChain keeps the top of a chain a build reuses mounted until the
// returned func: gc keeps mounted layers and every layer under them, and
// dropped attempts leave mounted layers.
func (e *Engine) pinChain(top string) func() {
	if top == "" {
		return func() {}
	}
	if _, err := e.layers.Mount(top); err != nil {
		e.log.Warn("pinning the reused chain", zap.String("layer", top), zap.Error(err))
		return func() {}
	}
	return func() { e.layers.Unmount(top) }
}

// busyPackages names the packages a build is running for right now (their
// derivation lock is held): none of their layers may go, since the build
// may be about to reuse any of them.
func (e *Engine) busyPackages() map[string]bool {
	busy := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(e.opts.CacheDir, "locks", lockDrv+"-*.lock"))
	for _, f := range files {
		fd, err := os.OpenFile(f, os.O_RDWR|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			// The holder wrote its derivation's path into the lock.
			drvPath := make([]byte, 4096)
			n, _ := fd.ReadAt(drvPath, 0)
			if _, name, ok := nixstore.SplitStorePath(string(drvPath[:n])); ok {
				busy[strings.TrimSuffix(name, ".drv")] = true
			}
		} else {
			syscall.Flock(int(fd.Fd()), syscall.LOCK_UN)
		}
		fd.Close()
	}
	return busy
}

// AutoGC applies the size limit of the cache's config.json, if any; builds
// call it when they end. It returns nil, nil when no limit is configured.
func (e *Engine) AutoGC(ctx context.Context) (*GCResult, error) {
	c, err := e.config()
	if err != nil {
		return nil, err
	}
	if c.GC.MaxSize == "" {
		return nil, nil
	}
	max, err := ParseSize(c.GC.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("config.json gc.maxSize: %w", err)
	}
	return e.GC(ctx, GCOptions{KeepLast: c.GC.KeepLast, MaxSize: max})
}

// ParseSize reads sizes such as 500M, 20G, 1.5GiB or a byte count.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad size %q (use e.g. 500M, 20G)", s)
	}
	return int64(f * float64(mult)), nil
}

// Package gc is the layer cache's removal policy: which chains of each
// package stay (the newest KeepLast, younger than OlderThan, within
// MaxSize) and which layers go, never one in use. The engine gives it
// every layer, the layers in use (a running phase, a mount, a build of the
// package, a pending result), and the store to measure and delete with,
// holding the removal lock; `nixlayer gc` and the size limit of
// config.json after a build call it through the engine.
package gc

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/layers"
)

// Options is the removal policy. A chain is a build: a layer nothing else
// builds on (its top) with the layers under it.
type Options struct {
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

// Result says what gc removed.
type Result struct {
	Removed []Removed `json:"removed"`
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

// Removed is one removed layer.
type Removed struct {
	ID      string `json:"id"`
	Package string `json:"package"`
	Phase   string `json:"phase,omitempty"`
	Status  string `json:"status"`
	Bytes   int64  `json:"bytes"`
}

// Store is the layer store as gc measures and removes from it.
type Store interface {
	DiskUsage(id string) int64
	Delete(id string) error
}

// Collect removes from st the layers of all (oldest first, as the store
// lists them) that o does not keep. The layers inUse, and every layer
// under them, stay whatever o says.
func Collect(st Store, all []*layers.Layer, inUse []string, o Options) (*Result, error) {
	if o.KeepLast <= 0 {
		o.KeepLast = 1
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
	pinned := map[string]bool{}
	for _, id := range inUse {
		withAncestors(pinned, tree.Get(id))
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
		usage[id] = st.DiskUsage(id)
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
	res := &Result{DryRun: o.DryRun}
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
			if err := st.Delete(l.ID); err != nil {
				res.Errors = append(res.Errors, err.Error())
				continue
			}
		}
		res.Freed += n
		res.Removed = append(res.Removed, Removed{ID: l.ID, Package: l.Meta.DrvName, Phase: l.Meta.Phase, Status: l.StatusWord(), Bytes: n})
	}
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("gc could not remove %d layer(s): %s", len(res.Errors), strings.Join(res.Errors, "; "))
	}
	return res, nil
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

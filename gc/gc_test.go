package gc

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/layers"
)

// fakeStore measures every layer at its size and records what is deleted.
type fakeStore struct {
	size    map[string]int64
	deleted []string
	refuse  string // a layer Delete fails on
}

func (s *fakeStore) DiskUsage(id string) int64 { return s.size[id] }

func (s *fakeStore) Delete(id string) error {
	if id == s.refuse {
		return errors.New("device busy")
	}
	s.deleted = append(s.deleted, id)
	return nil
}

// chain makes layers id1 → id2 → … of pkg, each a minute after the last,
// the first at start.
func chain(pkg string, start time.Time, ids ...string) []*layers.Layer {
	var out []*layers.Layer
	parent := ""
	for i, id := range ids {
		out = append(out, &layers.Layer{ID: id, Parent: parent, Created: start.Add(time.Duration(i) * time.Minute),
			Meta: layers.Meta{DrvName: pkg, Phase: "phase-" + id, Status: layers.StatusComplete}})
		parent = id
	}
	return out
}

func TestCollect(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	// hello: an old chain a1 a2, a newer one sharing a1 (b2), a newest
	// one of its own (c1 c2); gnused: one chain s1 s2.
	cache := func() []*layers.Layer {
		var all []*layers.Layer
		all = append(all, chain("hello", now.Add(-3*day), "a1", "a2")...)
		b2 := chain("hello", now.Add(-2*day), "b2")[0]
		b2.Parent = "a1"
		all = append(all, b2)
		all = append(all, chain("gnused", now.Add(-36*time.Hour), "s1", "s2")...)
		all = append(all, chain("hello", now.Add(-time.Hour), "c1", "c2")...)
		return all
	}
	sizes := map[string]int64{"a1": 100, "a2": 10, "b2": 20, "c1": 300, "c2": 30, "s1": 1000, "s2": 1}
	cases := []struct {
		name    string
		o       Options
		inUse   []string
		stale   string // a layer an audit made stale
		refuse  string
		removed []string // newest first, as gc removes them
		kept    int
		err     string
	}{
		{name: "the newest chain of each package stays", o: Options{},
			removed: []string{"b2", "a2", "a1"}, kept: 4},
		{name: "keep the last two chains of each package", o: Options{KeepLast: 2},
			removed: []string{"a2"}, kept: 6},
		{name: "a chain in use stays with every layer under it", o: Options{}, inUse: []string{"a2"},
			removed: []string{"b2"}, kept: 6},
		{name: "a pending result names a layer gone already", o: Options{}, inUse: []string{"gone"},
			removed: []string{"b2", "a2", "a1"}, kept: 4},
		{name: "older than a day: the package's only chain goes too", o: Options{OlderThan: day},
			removed: []string{"s2", "s1", "b2", "a2", "a1"}, kept: 2},
		{name: "a size limit drops the oldest kept chains first", o: Options{MaxSize: 400},
			removed: []string{"s2", "s1", "b2", "a2", "a1"}, kept: 2},
		{name: "a size limit everything fits in", o: Options{MaxSize: 2000},
			removed: []string{"b2", "a2", "a1"}, kept: 4},
		{name: "a stale chain is not one worth keeping: the newest other one stays", o: Options{}, stale: "c2",
			removed: []string{"c2", "c1", "a2"}, kept: 4},
		{name: "a dry run removes nothing", o: Options{DryRun: true},
			removed: []string{"b2", "a2", "a1"}, kept: 4},
		{name: "a layer that cannot be deleted is reported, the rest go", o: Options{}, refuse: "a2",
			removed: []string{"b2", "a1"}, kept: 4, err: "gc could not remove 1 layer(s): device busy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			all := cache()
			for _, l := range all {
				if l.ID == c.stale {
					l.Meta.Status = layers.StatusStale
				}
			}
			st := &fakeStore{size: sizes, refuse: c.refuse}
			res, err := Collect(st, all, c.inUse, c.o)
			if (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
			var removed []string
			var freed int64
			for _, r := range res.Removed {
				removed = append(removed, r.ID)
				freed += sizes[r.ID]
				if r.Package == "" || !strings.HasPrefix(r.Phase, "phase-") || r.Status == "" || r.Bytes != sizes[r.ID] {
					t.Errorf("removed layer described as %+v", r)
				}
			}
			if !slices.Equal(removed, c.removed) || res.Kept != c.kept || res.Freed != freed {
				t.Errorf("removed %v (freed %d), kept %d; want removed %v, kept %d", removed, res.Freed, res.Kept, c.removed, c.kept)
			}
			var total int64
			for _, s := range sizes {
				total += s
			}
			if res.KeptBytes+res.Freed+sizes[c.refuse] != total {
				t.Errorf("kept %d + freed %d bytes do not add up to the cache's %d", res.KeptBytes, res.Freed, total)
			}
			want := c.removed
			if c.o.DryRun {
				want = nil
			}
			if !slices.Equal(st.deleted, want) {
				t.Errorf("deleted %v, want %v", st.deleted, want)
			}
			if c.inUse != nil && c.inUse[0] == "a2" && !slices.Contains(res.InUse, "a1") {
				t.Errorf("in use %v: the layer under a used one is not reported", res.InUse)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "4K": 4096, "1.5M": 1572864, "20G": 20 << 30, "2GiB": 2 << 30, "100MB": 100 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1M", "ten"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

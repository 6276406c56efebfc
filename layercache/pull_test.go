package layercache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// fakeSource holds chains for the first `has` keys and counts lookups.
type fakeSource struct {
	keys    []string
	has     int
	lookups int
	fail    error
}

func (f *fakeSource) String() string { return "fake" }

func (f *fakeSource) Lookup(_ context.Context, key string) (ocispec.Descriptor, bool, error) {
	f.lookups++
	if f.fail != nil {
		return ocispec.Descriptor{}, false, f.fail
	}
	for i, k := range f.keys[:f.has] {
		if k == key {
			return ocispec.Descriptor{Annotations: map[string]string{"n": fmt.Sprint(i + 1)}}, true, nil
		}
	}
	return ocispec.Descriptor{}, false, nil
}

func (f *fakeSource) Open(context.Context, ocispec.Descriptor) (*ocichain.Chain, error) {
	return nil, errors.New("not used")
}

func (f *fakeSource) Download(context.Context, *ocichain.Chain, []int, string, func(int64)) (map[int]string, error) {
	return nil, errors.New("not used")
}

func fakeKeys(n int) []string {
	var ks []string
	for i := 0; i < n; i++ {
		ks = append(ks, fmt.Sprintf("%064x", i+1))
	}
	return ks
}

// The longest chain a cache holds is found with a binary search over the
// missing keys: a handful of one-request lookups, never one per phase.
func TestLongestPrefix(t *testing.T) {
	keys := fakeKeys(9)
	for from := 0; from < 9; from++ {
		for has := 0; has <= 9; has++ {
			src := &fakeSource{keys: keys, has: has}
			n, desc, err := longestPrefix(context.Background(), src, keys, from)
			if err != nil {
				t.Fatal(err)
			}
			want := has
			if has <= from {
				want = 0
			}
			if n != want {
				t.Fatalf("from %d, cache has %d: found %d", from, has, n)
			}
			if n > 0 && desc.Annotations["n"] != fmt.Sprint(n) {
				t.Fatalf("from %d, has %d: manifest of prefix %s, want %d", from, has, desc.Annotations["n"], n)
			}
			if src.lookups > 5 {
				t.Fatalf("from %d, has %d: %d lookups for 9 phases", from, has, src.lookups)
			}
		}
	}
	src := &fakeSource{keys: keys, fail: errors.New("connection refused")}
	if _, _, err := longestPrefix(context.Background(), src, keys, 0); err == nil || src.lookups != 1 {
		t.Fatalf("a cache that is down: %v after %d lookups", err, src.lookups)
	}
}

func testWanted(keys []string) Wanted {
	w := Wanted{Drv: "hello-1", Outputs: map[string]string{"out": curOut}}
	for i, k := range keys {
		w.Phases = append(w.Phases, Phase{Name: fmt.Sprintf("phase%d", i), Key: k})
	}
	return w
}

const (
	curOut = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-hello-1"
	ciOut  = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1"
)

func testChain(keys []string, n int) *ocichain.Chain {
	c := &ocichain.Chain{}
	for i := 0; i < n; i++ {
		c.Records = append(c.Records, ocichain.Record{Meta: layers.Meta{Status: layers.StatusComplete, Key: keys[i], Phase: fmt.Sprintf("phase%d", i), Index: i, Outputs: map[string]string{"out": ciOut}}})
	}
	return c
}

// A pulled chain must be the plan's phases with the keys computed here.
func TestMatchPlan(t *testing.T) {
	keys := fakeKeys(6)
	plan := testWanted(keys)
	if top, err := matchPlan(testChain(keys, 4), plan, 4); err != nil || top != 3 {
		t.Fatalf("a matching chain: top %d, %v", top, err)
	}
	// A resumed build's chain has a rewrite layer between phases.
	c := testChain(keys, 4)
	yes := true
	rw := ocichain.Record{Meta: layers.Meta{Kind: layers.KindRewrite, Status: layers.StatusDerived, Note: "rewrite: learned", Verified: &yes, Outputs: map[string]string{"out": curOut}}}
	c.Records = append(c.Records[:2], append([]ocichain.Record{rw}, c.Records[2:]...)...)
	if top, err := matchPlan(c, plan, 4); err != nil || top != 4 {
		t.Fatalf("a chain with a rewrite layer: top %d, %v", top, err)
	}

	bad := testChain(keys, 4)
	bad.Records[2].Meta.Key = strings.Repeat("e", 64)
	if _, err := matchPlan(bad, plan, 4); err == nil || !strings.Contains(err.Error(), "the layer for phase2 records key eeeeeeeeeeee, this build computes") {
		t.Fatalf("a layer with another key: %v", err)
	}
	if top, err := matchPlan(bad, plan, 0); err != nil || top != 1 {
		t.Fatalf("by tag, the matching prefix: top %d, %v", top, err)
	}
	other := testChain(keys, 4)
	other.Records[0].Meta.Outputs = map[string]string{"out": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-evil-1"}
	if _, err := matchPlan(other, plan, 4); err == nil || !strings.Contains(err.Error(), "cannot stand for") {
		t.Fatalf("a layer built for another output: %v", err)
	}
	long := testChain(keys, 5)
	if _, err := matchPlan(long, plan, 4); err == nil || !strings.Contains(err.Error(), "goes on past") {
		t.Fatalf("a chain longer than its tag says: %v", err)
	}
	no := false
	unverified := testChain(keys, 4)
	unverified.Records[1].Meta.Verified = &no
	if _, err := matchPlan(unverified, plan, 4); err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Fatalf("an unverified layer: %v", err)
	}
}

package layercache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.uber.org/zap"
	"oras.land/oras-go/v2/content"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// fakeSource holds chains for the first `has` keys and counts lookups;
// opening the chain of prefix n gives chain(n) (nil: an error).
type fakeSource struct {
	keys    []string
	has     int
	lookups int
	looked  []string
	fail    error
	chain   func(n int) *ocichain.Chain
	openErr error
}

func (f *fakeSource) String() string { return "fake" }

func (f *fakeSource) Lookup(_ context.Context, key string) (ocispec.Descriptor, bool, error) {
	f.lookups++
	f.looked = append(f.looked, key)
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

func (f *fakeSource) Open(_ context.Context, desc ocispec.Descriptor) (*ocichain.Chain, error) {
	if f.openErr != nil {
		return nil, f.openErr
	}
	var n int
	fmt.Sscan(desc.Annotations["n"], &n)
	if f.chain == nil {
		return nil, errors.New("not used")
	}
	return f.chain(n), nil
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

// Where a build must start: the first phase its plan runs.
func TestFirstToRun(t *testing.T) {
	for _, tc := range []struct {
		run  []bool
		want int
	}{
		{nil, -1},
		{[]bool{false, false, false}, -1},
		{[]bool{true, true, true}, 0},
		{[]bool{false, false, true, true}, 2},
		{[]bool{false, true, false}, 1}, // the first that runs, whatever follows
	} {
		var phases []Phase
		for i, r := range tc.run {
			phases = append(phases, Phase{Name: fmt.Sprintf("phase%d", i), Run: r})
		}
		if got := FirstToRun(phases); got != tc.want {
			t.Errorf("runs %v: first %d, want %d", tc.run, got, tc.want)
		}
	}
}

// A stale key ends what may be pulled: neither it nor what chains on it
// comes back from a registry that may hold the same stale content.
func TestPullableKeys(t *testing.T) {
	keys := fakeKeys(5)
	for _, tc := range []struct {
		stale []int
		want  int
	}{
		{nil, 5},
		{[]int{0}, 0},
		{[]int{2}, 2},
		{[]int{3, 1}, 1},
		{[]int{4}, 4},
	} {
		w := testWanted(keys)
		for _, i := range tc.stale {
			w.Phases[i].Stale = true
		}
		got := pullableKeys(w.Phases)
		if len(got) != tc.want || (tc.want > 0 && got[tc.want-1] != keys[tc.want-1]) {
			t.Errorf("stale %v: %d keys, want %d", tc.stale, len(got), tc.want)
		}
	}
}

// A pulled layer's outputs must be ones a rewrite can map to this
// derivation's: same names, same store directory, same name and length.
func TestCheckOutputs(t *testing.T) {
	cur := map[string]string{"out": curOut, "dev": "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-hello-1-dev"}
	for _, tc := range []struct {
		name string
		rec  map[string]string
		err  string
	}{
		{"the same paths", cur, ""},
		{"other hashes", map[string]string{"out": ciOut, "dev": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1-dev"}, ""},
		{"an output fewer", map[string]string{"out": ciOut}, "it records 1 outputs, the derivation has 2"},
		{"another output's name", map[string]string{"out": ciOut, "lib": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1-dev"}, `it records output dev as ""`},
		{"another package", map[string]string{"out": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hullo-1", "dev": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1-dev"}, "cannot stand for " + curOut},
		{"another length", map[string]string{"out": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1", "dev": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1-dev"}, "cannot stand for " + curOut},
		{"another store", map[string]string{"out": "/gnu/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1", "dev": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1-dev"}, "cannot stand for " + curOut},
	} {
		err := checkOutputs(tc.rec, cur)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}

// A chain that fails to open is refused in words a warning can show.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: no trusted key signed it", ocichain.ErrUntrusted), "refused: no trusted key signed it"},
		{fmt.Errorf("config: %w", content.ErrMismatchedDigest), "refused: config: mismatched digest"},
		{errors.New("connection reset"), "connection reset"},
	} {
		if got := refusal(tc.err).Error(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

// testCache is a cache whose config lists the given layer caches, all of
// them src (a ref named "down" fails to open).
func testCache(cfg *Config, src *fakeSource) *Cache {
	return &Cache{
		Log:    zap.NewNop(),
		Config: func() (*Config, error) { return cfg, nil },
		openSource: func(ref string, _ *settings) (Source, error) {
			if ref == "down" {
				return nil, errors.New("no such registry")
			}
			return src, nil
		},
	}
}

// What a build pulls on a miss, and why it pulls nothing: the choice up to
// the download, every failure one warning and the build goes on locally.
func TestPullMissing(t *testing.T) {
	keys := fakeKeys(6)
	caches := &Config{LayerCaches: []string{"fake"}}
	signed := func(n int) *ocichain.Chain {
		c := testChain(keys, n)
		c.SignedBy = "ci-1"
		return c
	}
	unsigned := func(n int) *ocichain.Chain {
		c := testChain(keys, n)
		c.Untrusted = "no trusted key signed it"
		return c
	}
	for _, tc := range []struct {
		name            string
		cfg             *Config
		cached          int   // phases cached here
		stale           []int // phases whose key an audit found stale here
		src             *fakeSource
		requireVerified bool
		looked          int // keys looked up, the first of them keys[cached]
		warn            string
	}{
		{name: "nothing to run", cfg: caches, cached: 6, src: &fakeSource{has: 6}},
		{name: "no layer caches", cfg: &Config{}, src: &fakeSource{has: 6}},
		{name: "a bad config", cfg: &Config{LayerCaches: []string{"fake"}, RegistryTimeout: "soon"}, src: &fakeSource{has: 6},
			warn: `layer caches not used: config.json registryTimeout "soon": use e.g. 10s`},
		{name: "a cache that holds nothing", cfg: caches, src: &fakeSource{}, looked: 1},
		{name: "a cache that holds only what is here", cfg: caches, cached: 3, src: &fakeSource{has: 3}, looked: 1},
		{name: "a cache that cannot be opened", cfg: &Config{LayerCaches: []string{"down", "fake"}}, src: &fakeSource{}, looked: 1,
			warn: "layer cache down: no such registry"},
		{name: "a cache that is down", cfg: caches, src: &fakeSource{fail: errors.New("connection refused")}, looked: 1,
			warn: "layer cache fake unreachable (connection refused); building locally"},
		{name: "an unsigned chain for a build that wants verified layers", cfg: caches, cached: 2, src: &fakeSource{has: 5, chain: unsigned}, requireVerified: true, looked: 3,
			warn: "layer cache fake: refused: no trusted key signed it, and this build takes verified layers only; building locally"},
		{name: "a chain that does not open", cfg: caches, src: &fakeSource{has: 6, openErr: fmt.Errorf("%w: signed by ci-2, not trusted", ocichain.ErrUntrusted)}, looked: 4,
			warn: "layer cache fake: refused: signed by ci-2, not trusted; building locally"},
		{name: "a chain shorter than its tag says", cfg: caches, src: &fakeSource{has: 4, chain: func(int) *ocichain.Chain { return signed(3) }}, looked: 3,
			warn: "layer cache fake: refused: the chain does not end in the phase its tag names; building locally"},
		{name: "a stale key", cfg: caches, cached: 1, stale: []int{3}, src: &fakeSource{has: 6, chain: unsigned}, requireVerified: true, looked: 2,
			warn: "layer cache fake: refused: no trusted key signed it, and this build takes verified layers only; building locally"},
		{name: "a stale key next", cfg: caches, cached: 1, stale: []int{1}, src: &fakeSource{has: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.keys = keys
			w := testWanted(keys)
			for i := range w.Phases {
				w.Phases[i].Run = i >= tc.cached
			}
			for _, i := range tc.stale {
				w.Phases[i].Stale = true
			}
			var warnings []string
			rep := testCache(tc.cfg, tc.src).PullMissing(context.Background(), w, RegistryOptions{}, tc.requireVerified, func(ev events.Event) {
				if ev.Kind != events.EventWarning {
					t.Errorf("event %s: %s", ev.Kind, ev.Message)
				}
				warnings = append(warnings, ev.Message)
			})
			if rep != nil {
				t.Fatalf("pulled %+v", rep)
			}
			if want := []string{tc.warn}; tc.warn == "" && len(warnings) > 0 || tc.warn != "" && !slices.Equal(warnings, want) {
				t.Errorf("warnings %q, want %q", warnings, tc.warn)
			}
			if len(tc.src.looked) != tc.looked || tc.looked > 0 && tc.src.looked[0] != keys[tc.cached] {
				t.Errorf("looked up %d keys (%v), want %d from phase %d", len(tc.src.looked), tc.src.looked, tc.looked, tc.cached)
			}
			for _, k := range tc.src.looked {
				for _, i := range tc.stale {
					if k == keys[i] {
						t.Errorf("looked up the stale key of phase%d", i)
					}
				}
			}
		})
	}
}

package layercache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.uber.org/zap"
	"oras.land/oras-go/v2/content"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// Phase is a planned phase as a pull sees it.
type Phase struct {
	Name string
	Key  string // the key this build computes
	Run  bool   // the plan runs it: this cache has no layer for it
	// Stale: an audit found a layer with this key differs from a clean
	// build here; PullMissing never pulls it (nor what chains on it) back.
	Stale bool
}

// Wanted is what a build asks of the layer caches: its plan's phases in
// order and the derivation's outputs (a pulled layer must have been built
// with paths a rewrite can map to them).
type Wanted struct {
	Drv     string // the derivation's name, for messages
	Phases  []Phase
	Outputs map[string]string
}

// FirstToRun is the index of the first phase a plan runs (-1: none): where
// the build must start, and the first key worth looking up elsewhere.
func FirstToRun(phases []Phase) int {
	for i, ph := range phases {
		if ph.Run {
			return i
		}
	}
	return -1
}

// PullReport says what a pull brought.
type PullReport struct {
	Source string   `json:"source"`
	Phases []string `json:"phases"` // phases the pulled chain covers
	Layers int      `json:"layers"` // layers created
	Reused int      `json:"reused"` // layers the cache had already
	// Bytes were downloaded; ChainBytes is the compressed size of the
	// whole pulled chain (what a pull into an empty cache downloads).
	Bytes      int64 `json:"bytes"`
	ChainBytes int64 `json:"chainBytes"`
	// TarBytes is what the downloaded layers unpack to (their tars).
	TarBytes int64         `json:"tarBytes"`
	Duration time.Duration `json:"duration"`
	SignedBy string        `json:"signedBy,omitempty"`
	// Verified is false for a chain accepted without a trusted signature
	// (--no-check-sigs, an unsigned import): its results stay out of the store.
	Verified   bool   `json:"verified"`
	Untrusted  string `json:"untrusted,omitempty"`
	Neutralise string `json:"neutralised,omitempty"` // what screening changed

	// Later are the records of the pulled chain's phases after the prefix:
	// the replan names what differs in the first phase that must run.
	Later []layers.Meta `json:"-"`
}

// longestPrefix finds the longest chain src holds for the phase keys,
// given that keys[:from] are cached here already: it returns how many
// phases it covers (0 when none beyond from) and its manifest. Every prefix
// of a pushed chain is tagged with its key, so presence is monotone and a
// binary search costs about log2(len(keys)-from)+1 lookups.
func longestPrefix(ctx context.Context, src Source, keys []string, from int) (int, ocispec.Descriptor, error) {
	if from >= len(keys) {
		return 0, ocispec.Descriptor{}, nil
	}
	desc, ok, err := src.Lookup(ctx, keys[from])
	if err != nil || !ok {
		return 0, desc, err
	}
	best := from + 1
	for lo, hi := from+1, len(keys)-1; lo <= hi; {
		mid := (lo + hi) / 2
		d, ok, err := src.Lookup(ctx, keys[mid])
		if err != nil {
			return 0, desc, err
		}
		if ok {
			best, desc, lo = mid+1, d, mid+1
		} else {
			hi = mid - 1
		}
	}
	return best, desc, nil
}

// pullableKeys are the wanted phases' keys up to the first stale one:
// that one is never pulled back (nor what chains on it), as the registry
// may hold the same stale content.
func pullableKeys(phases []Phase) []string {
	var keys []string
	for _, ph := range phases {
		if ph.Stale {
			break
		}
		keys = append(keys, ph.Key)
	}
	return keys
}

// PullMissing looks the phases a build must run up in the configured layer
// caches and pulls the longest chain found; it returns what it pulled (nil:
// nothing), after which the caller plans again. Failures are warnings: the
// build goes on locally. requireVerified (the hook, --exact) refuses chains
// no trusted key signed before fetching them.
func (c *Cache) PullMissing(ctx context.Context, w Wanted, ro RegistryOptions, requireVerified bool, progress func(events.Event)) *PullReport {
	first := FirstToRun(w.Phases)
	if first < 0 {
		return nil
	}
	rs, err := c.settings(ro)
	if err != nil {
		progress(events.Event{Kind: events.EventWarning, Message: "layer caches not used: " + err.Error()})
		return nil
	}
	if len(rs.cfg.LayerCaches) == 0 {
		return nil
	}
	keys := pullableKeys(w.Phases)
	for _, ref := range rs.cfg.LayerCaches {
		src, err := c.source(ref, rs)
		if err != nil {
			progress(events.Event{Kind: events.EventWarning, Message: fmt.Sprintf("layer cache %s: %v", ref, err)})
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, rs.timeout)
		n, desc, err := longestPrefix(lctx, src, keys, first)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			progress(events.Event{Kind: events.EventWarning, Message: fmt.Sprintf("layer cache %s unreachable (%s); building locally", src, logtail.FirstLine(ocichain.Hint(err).Error()))})
			continue
		}
		if n == 0 {
			continue
		}
		rep, err := c.pullPrefix(ctx, w, src, desc, n, requireVerified, progress)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			progress(events.Event{Kind: events.EventWarning, Message: fmt.Sprintf("layer cache %s: %s; building locally", src, logtail.FirstLine(ocichain.Hint(err).Error()))})
			continue
		}
		c.Log.Debug("pulled", zap.String("from", rep.Source), zap.Int("layers", rep.Layers), zap.Int64("bytes", rep.Bytes))
		return rep
	}
	return nil
}

// Pull pulls the longest chain ref's repository holds for the wanted
// phases this cache misses (looked up by key); with a tag in ref, the
// longest prefix of that chain whose keys this build computes.
func (c *Cache) Pull(ctx context.Context, w Wanted, ref string, ro RegistryOptions, progress func(events.Event)) (*PullReport, error) {
	if progress == nil {
		progress = func(events.Event) {}
	}
	rs, err := c.settings(ro)
	if err != nil {
		return nil, err
	}
	src, r, err := registrySource(rs, ref)
	if err != nil {
		return nil, err
	}
	if tag := r.Tag(); tag != "" {
		desc, err := r.Target().Resolve(ctx, tag)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", src, tag, ocichain.Hint(err))
		}
		ch, err := src.Open(ctx, desc)
		if err != nil {
			return nil, refusal(err)
		}
		top, err := matchPlan(ch, w, 0)
		if err != nil {
			return nil, fmt.Errorf("%s:%s refused: %w", src, tag, err)
		}
		return c.applyChain(ctx, src, ch, top, progress)
	}
	first := FirstToRun(w.Phases)
	if first < 0 {
		return &PullReport{Source: src.String(), Verified: true}, nil
	}
	keys := make([]string, len(w.Phases))
	for i, ph := range w.Phases {
		keys[i] = ph.Key
	}
	lctx, cancel := context.WithTimeout(ctx, rs.timeout)
	n, desc, err := longestPrefix(lctx, src, keys, first)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("looking up %s in %s: %w", w.Drv, src, ocichain.Hint(err))
	}
	if n == 0 {
		return nil, fmt.Errorf("%s has no layers for %s beyond what this cache holds (%s onwards): push them with nixlayer push", src, w.Drv, w.Phases[first].Name)
	}
	return c.pullPrefix(ctx, w, src, desc, n, false, progress)
}

// pullPrefix pulls the chain desc names, which must cover exactly the
// first n wanted phases with the keys this build computes.
func (c *Cache) pullPrefix(ctx context.Context, w Wanted, src Source, desc ocispec.Descriptor, n int, requireVerified bool, progress func(events.Event)) (*PullReport, error) {
	ch, err := src.Open(ctx, desc)
	if err != nil {
		return nil, refusal(err)
	}
	if requireVerified && !ch.Trusted() {
		// The hook and --exact never reuse unverified layers: do not fetch them.
		return nil, fmt.Errorf("refused: %s, and this build takes verified layers only", ch.Untrusted)
	}
	top, err := matchPlan(ch, w, n)
	if err != nil {
		return nil, fmt.Errorf("refused: %w", err)
	}
	return c.applyChain(ctx, src, ch, top, progress)
}

// refusal words a failed open as the reason a chain is not used.
func refusal(err error) error {
	switch {
	case errors.Is(err, ocichain.ErrUntrusted):
		return fmt.Errorf("refused: %s", strings.TrimPrefix(err.Error(), ocichain.ErrUntrusted.Error()+": "))
	case errors.Is(err, content.ErrMismatchedDigest):
		return fmt.Errorf("refused: %w", err)
	}
	return err
}

// matchPlan checks a fetched chain against the keys this build computes:
// its keyed layers must be the wanted phases in order, each with the key
// computed here, built with output paths a rewrite can map to this
// derivation's. With n > 0 the chain must end in phase n-1 (a lookup by
// its key); with n = 0 the longest matching prefix is taken (a pull by
// tag). It returns the index of the last layer to apply.
func matchPlan(c *ocichain.Chain, w Wanted, n int) (int, error) {
	next, top := 0, -1
	for i, r := range c.Records {
		m := r.Meta
		if m.Key == "" {
			// A rewrite layer between phases (a resumed build's chain).
			if m.KindOf() != layers.KindRewrite || m.Status != layers.StatusDerived || !m.IsVerified() {
				return 0, fmt.Errorf("layer %d of the chain (%s) has no cache key and is not an exact rewrite", i+1, m.Label())
			}
		} else {
			if next >= len(w.Phases) || (n > 0 && next >= n) {
				if n == 0 {
					break
				}
				return 0, fmt.Errorf("the chain goes on past %s, the phase its tag names", w.Phases[n-1].Name)
			}
			ph := w.Phases[next]
			if m.Key != ph.Key || m.Index != next || m.Phase != ph.Name {
				if n == 0 && next > 0 {
					break
				}
				return 0, fmt.Errorf("the layer for %s records key %s, this build computes %s", orPhase(m.Phase, ph.Name), shortKey(m.Key), shortKey(ph.Key))
			}
			if m.KindOf() != layers.KindPhase || m.Status != layers.StatusComplete || !m.IsVerified() {
				return 0, fmt.Errorf("the layer for %s is %s and not verified", ph.Name, m.Status)
			}
			next++
			top = i
		}
		if err := checkOutputs(m.Outputs, w.Outputs); err != nil {
			return 0, fmt.Errorf("layer %d of the chain (%s): %w", i+1, m.Label(), err)
		}
	}
	if top < 0 || (n > 0 && (next != n || top != len(c.Records)-1)) {
		return 0, fmt.Errorf("the chain does not end in the phase its tag names")
	}
	return top, nil
}

func orPhase(recorded, want string) string {
	if recorded != "" {
		return recorded
	}
	return want
}

func shortKey(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	if key == "" {
		return "(none)"
	}
	return key
}

// checkOutputs: a pulled layer's output paths must be ones a rewrite can
// map to this derivation's: the same outputs, store paths of the same
// name and length.
func checkOutputs(rec, cur map[string]string) error {
	if len(rec) != len(cur) {
		return fmt.Errorf("it records %d outputs, the derivation has %d", len(rec), len(cur))
	}
	for name, p := range cur {
		q, ok := rec[name]
		if !ok || len(q) != len(p) || filepath.Dir(q) != filepath.Dir(p) || storeName(q) != storeName(p) {
			return fmt.Errorf("it records output %s as %q, which cannot stand for %s", name, q, p)
		}
	}
	return nil
}

func storeName(p string) string {
	_, name, _ := strings.Cut(filepath.Base(p), "-")
	return name
}

// applyChain creates layers 0..top of a fetched chain in the store,
// reusing the ones it holds already; blobs are downloaded digest-checked
// first, then applied through the store's ApplyDiff after screening. On any
// failure the layers it created are removed again: nothing half-pulled is
// ever a cache hit.
func (c *Cache) applyChain(ctx context.Context, src Source, ch *ocichain.Chain, top int, progress func(events.Event)) (*PullReport, error) {
	t0 := time.Now()
	rep := &PullReport{Source: src.String(), SignedBy: ch.SignedBy, Verified: ch.Trusted(), Untrusted: ch.Untrusted}
	for _, r := range ch.Later {
		rep.Later = append(rep.Later, r.Meta)
	}
	for i := 0; i <= top; i++ {
		rep.ChainBytes += ch.Layers[i].Size
		if p := ch.Records[i].Meta.Phase; p != "" && ch.Records[i].Meta.Key != "" {
			rep.Phases = append(rep.Phases, p)
		}
	}
	parent, start := "", 0
	twins := c.twinFinder()
	for ; start <= top; start++ {
		id, ok := twins(parent, ch, start)
		if !ok {
			break
		}
		parent = id
		rep.Reused++
	}
	if start > top {
		rep.Duration = time.Since(t0)
		return rep, nil
	}
	var idx []int
	var size int64
	var fetched []string
	for i := start; i <= top; i++ {
		idx = append(idx, i)
		size += ch.Layers[i].Size
		rep.TarBytes += ch.Records[i].Size
		if m := ch.Records[i].Meta; m.Phase != "" && m.Key != "" {
			fetched = append(fetched, m.Phase)
		}
	}
	if free, err := layers.FreeSpace(c.Dir); err == nil && uint64(rep.TarBytes) > free {
		return nil, fmt.Errorf("refused: the layers unpack to %s, the cache's filesystem has %s free", layers.FormatSize(rep.TarBytes), layers.FormatSize(int64(free)))
	}
	pkg := ch.Records[top].Meta.DrvName
	progress(events.Event{Kind: events.EventPull, Bytes: size, Message: fmt.Sprintf("pulling %s of %s from %s: %d layers, %s", span(fetched), pkg, src, len(idx), layers.FormatSize(size))})
	tmp, err := os.MkdirTemp(c.Dir, pullTmpPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	files, err := src.Download(ctx, ch, idx, tmp, func(n int64) { rep.Bytes += n })
	if err != nil {
		return nil, refusal(err)
	}
	var created []string
	ok := false
	defer func() {
		if !ok {
			for i := len(created) - 1; i >= 0; i-- {
				if err := c.Layers.Delete(created[i]); err != nil {
					c.Log.Warn("removing a half-pulled layer", zap.Error(err))
				}
			}
		}
	}()
	var screened ocichain.Screened
	for _, i := range idx {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id, err := c.applyLayer(parent, ch, i, files[i], &screened)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, ch.Records[i].Meta.Label(), err)
		}
		created = append(created, id)
		parent = id
	}
	ok = true
	rep.Layers = len(created)
	rep.Duration = time.Since(t0)
	if n := screened.SetID.Load(); n > 0 {
		rep.Neutralise = fmt.Sprintf("setuid/setgid bits cleared on %d files", n)
	}
	if n := screened.Xattrs.Load(); n > 0 {
		rep.Neutralise = strings.TrimPrefix(rep.Neutralise+fmt.Sprintf("; %d privileged extended attributes dropped", n), "; ")
	}
	msg := fmt.Sprintf("pulled %d layers (%s, unpacked %s) from %s in %s", rep.Layers, layers.FormatSize(rep.Bytes), layers.FormatSize(rep.TarBytes), src, rep.Duration.Round(time.Millisecond))
	if !rep.Verified {
		msg += "; NOT VERIFIED (" + rep.Untrusted + "): results resting on them stay out of the Nix store"
	}
	if rep.Neutralise != "" {
		msg += "; " + rep.Neutralise
	}
	progress(events.Event{Kind: events.EventPulled, Bytes: rep.Bytes, Elapsed: rep.Duration, Message: msg})
	return rep, nil
}

func (c *Cache) applyLayer(parent string, ch *ocichain.Chain, i int, file string, screened *ocichain.Screened) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	rec := ch.Records[i]
	meta := rec.Meta
	meta.Owner, meta.PrivateTo = 0, nil
	if !ch.Trusted() {
		no := false
		meta.Verified = &no
	}
	data := map[string][]byte{}
	for _, name := range layers.ChainData {
		if v, ok := rec.Data[name]; ok {
			data[name] = v
		}
	}
	blob, err := json.Marshal(ocichain.Blob{Layer: ch.Layers[i], DiffID: ch.DiffIDs[i], Size: rec.Size})
	if err != nil {
		return "", err
	}
	data[layers.DataOCIBlob] = blob
	tar := ocichain.Screen(f, ch.DiffIDs[i], ch.LayerLimit(i), screened)
	defer tar.Close()
	l, err := c.Layers.Apply(parent, meta, tar, data)
	if err != nil {
		return "", err
	}
	return l.ID, nil
}

// twinFinder returns a function that finds a layer the cache holds already
// for layer i of a chain, on parent: one applied from the same blob, or a
// verified phase layer with the same key built with the same output paths.
func (c *Cache) twinFinder() func(parent string, ch *ocichain.Chain, i int) (string, bool) {
	var usable []*layers.Layer
	if all, err := c.Layers.List(); err == nil {
		for _, l := range all {
			if l.Meta.Status == layers.StatusComplete || l.Meta.Status == layers.StatusDerived {
				usable = append(usable, l)
			}
		}
	}
	tree := layers.NewTree(usable)
	return func(parent string, ch *ocichain.Chain, i int) (string, bool) {
		rec := ch.Records[i].Meta
		if rec.Key != "" {
			if l, ok := c.Layers.Lookup(rec.Key); ok && l.Parent == parent && l.Meta.IsVerified() && maps.Equal(l.Meta.Outputs, rec.Outputs) {
				return l.ID, true
			}
		}
		for _, l := range tree.Children(parent) {
			if b := c.recordedBlob(l.ID); b != nil && b.Layer.Digest == ch.Layers[i].Digest && l.Meta.Key == rec.Key {
				return l.ID, true
			}
		}
		return "", false
	}
}

func (c *Cache) recordedBlob(id string) *ocichain.Blob {
	data, err := c.Layers.Data(id, layers.DataOCIBlob)
	if err != nil {
		return nil
	}
	var b ocichain.Blob
	if json.Unmarshal(data, &b) != nil || b.Layer.Digest == "" {
		return nil
	}
	return &b
}

// span names a run of phases: unpackPhase…checkPhase.
func span(phases []string) string {
	switch len(phases) {
	case 0:
		return "layers"
	case 1:
		return phases[0]
	}
	return phases[0] + "…" + phases[len(phases)-1]
}

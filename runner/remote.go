package runner

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
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// Layers from elsewhere, the model being Nix's substituters: on a miss a
// build looks its missing phase keys up in the configured layer caches (OCI
// registries) and pulls the longest chain one has before running anything;
// a cache that is down, slow or offers something untrustworthy costs one
// warning line and the build goes on locally. After a build (and after
// learning a path map) the new chain is pushed to pushTo.

// layerSource is where the runner finds chains by phase key: an OCI
// registry or layout through ocichain (a fake in tests). Planning only
// needs lookup; pulling opens and downloads.
type layerSource interface {
	String() string
	// lookup finds the chain that ends in the phase with this key (one request).
	lookup(ctx context.Context, key string) (ocispec.Descriptor, bool, error)
	// open reads the chain and checks its signature and config digest.
	open(ctx context.Context, desc ocispec.Descriptor) (*ocichain.Chain, error)
	// download fetches the blobs of layers idx into dir, digest-checked.
	download(ctx context.Context, c *ocichain.Chain, idx []int, dir string, progress func(int64)) (map[int]string, error)
}

// ociSource is a registry repository or an OCI layout.
type ociSource struct {
	name  string
	t     content.ReadOnlyStorage
	res   content.Resolver
	trust ocichain.Trust
	// allowUntrusted takes chains no trusted key signed (marked not
	// verified): root's import of a layout, like nix-store --import.
	allowUntrusted bool
	stall          time.Duration
}

func (s *ociSource) String() string { return s.name }

func (s *ociSource) lookup(ctx context.Context, key string) (ocispec.Descriptor, bool, error) {
	return ocichain.Lookup(ctx, s.res, key)
}

func (s *ociSource) open(ctx context.Context, desc ocispec.Descriptor) (*ocichain.Chain, error) {
	return ocichain.Open(ctx, s.t, desc, s.trust, s.allowUntrusted)
}

func (s *ociSource) download(ctx context.Context, c *ocichain.Chain, idx []int, dir string, progress func(int64)) (map[int]string, error) {
	return ocichain.Download(ctx, s.t, c, idx, dir, s.stall, progress)
}

// remoteSettings is the config resolved for pulls and pushes.
type remoteSettings struct {
	cfg      *Config
	trust    ocichain.Trust
	timeout  time.Duration
	insecure bool // plain HTTP to every registry
}

func (e *Engine) remoteSettings(ro RegistryOptions) (*remoteSettings, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	trust, err := ocichain.ParseTrust(cfg.TrustedLayerKeys, ro.NoCheckSigs)
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	timeout, err := cfg.registryTimeout()
	if err != nil {
		return nil, err
	}
	return &remoteSettings{cfg: cfg, trust: trust, timeout: timeout, insecure: ro.Insecure}, nil
}

func (e *Engine) openRegistry(rs *remoteSettings, ref string) (*ocichain.Remote, error) {
	insecure := rs.insecure || ocichain.HostIn(ref, rs.cfg.InsecureRegistries)
	return ocichain.OpenRegistry(ref, ocichain.RegistryOptions{Insecure: insecure, Timeout: rs.timeout})
}

func (e *Engine) registrySource(rs *remoteSettings, ref string) (*ociSource, *ocichain.Remote, error) {
	r, err := e.openRegistry(rs, ref)
	if err != nil {
		return nil, nil, err
	}
	return &ociSource{name: r.String(), t: r.Target(), res: r.Target(), trust: rs.trust, stall: rs.timeout}, r, nil
}

// longestPrefix finds the longest chain src holds for the phase keys,
// given that keys[:from] are cached here already: it returns how many
// phases it covers (0 when none beyond from) and its manifest. Every prefix
// of a pushed chain is tagged with its key, so presence is monotone and a
// binary search costs about log2(len(keys)-from)+1 lookups.
func longestPrefix(ctx context.Context, src layerSource, keys []string, from int) (int, ocispec.Descriptor, error) {
	if from >= len(keys) {
		return 0, ocispec.Descriptor{}, nil
	}
	desc, ok, err := src.lookup(ctx, keys[from])
	if err != nil || !ok {
		return 0, desc, err
	}
	best := from + 1
	for lo, hi := from+1, len(keys)-1; lo <= hi; {
		mid := (lo + hi) / 2
		d, ok, err := src.lookup(ctx, keys[mid])
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

// firstToRun is the index of the first phase a plan runs (-1: none).
func firstToRun(p *Plan) int {
	for i, ph := range p.Phases {
		if ph.Status == StatusRun {
			return i
		}
	}
	return -1
}

// pullMissing looks the phases a plan must run up in the configured layer
// caches and pulls the longest chain found; it returns the plan to build,
// replanned when something was pulled. Failures are warnings: the build
// goes on locally.
func (e *Engine) pullMissing(ctx context.Context, j *job, plan *Plan, po PlanOptions, ro RegistryOptions, progress func(events.Event)) *Plan {
	first := firstToRun(plan)
	if first < 0 || plan.From != "" {
		return plan
	}
	rs, err := e.remoteSettings(ro)
	if err != nil {
		progress(events.Event{Kind: events.EventWarning, Message: "layer caches not used: " + err.Error()})
		return plan
	}
	if len(rs.cfg.LayerCaches) == 0 {
		return plan
	}
	keys := make([]string, len(plan.Phases))
	for i, ph := range plan.Phases {
		keys[i] = ph.Key
	}
	// A key an audit found stale here is never pulled back (nor what
	// chains on it): the registry may hold the same stale content.
	stale := e.staleKeys()
	for i, k := range keys {
		if stale[k] {
			keys = keys[:i]
			break
		}
	}
	for _, ref := range rs.cfg.LayerCaches {
		src, _, err := e.registrySource(rs, ref)
		if err != nil {
			progress(events.Event{Kind: events.EventWarning, Message: fmt.Sprintf("layer cache %s: %v", ref, err)})
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, rs.timeout)
		n, desc, err := longestPrefix(lctx, src, keys, first)
		cancel()
		if ctx.Err() != nil {
			return plan
		}
		if err != nil {
			progress(events.Event{Kind: events.EventWarning, Message: fmt.Sprintf("layer cache %s unreachable (%s); building locally", src, oneLine(ocichain.Hint(err)))})
			continue
		}
		if n == 0 {
			continue
		}
		rep, err := e.pullPrefix(ctx, j, plan, src, desc, n, po.RequireVerified, progress)
		if err != nil {
			if ctx.Err() != nil {
				return plan
			}
			progress(events.Event{Kind: events.EventWarning, Message: fmt.Sprintf("layer cache %s: %s; building locally", src, oneLine(ocichain.Hint(err)))})
			continue
		}
		e.log.Debug("pulled", zap.String("from", rep.Source), zap.Int("layers", rep.Layers), zap.Int64("bytes", rep.Bytes))
		np, err := e.plan(j, po)
		if err != nil {
			return plan
		}
		explainAgainst(np, rep.later, src.String())
		return np
	}
	return plan
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

	later []layers.Meta // the pulled chain's phases after the prefix
}

// explainAgainst names what invalidated the first phase to run when this
// cache never built the package: the pulled chain's own record of that
// phase says which attribute differs.
func explainAgainst(p *Plan, later []layers.Meta, src string) {
	f := firstToRun(p)
	if f < 0 || !strings.HasPrefix(p.Phases[f].Reason, "no earlier build") {
		return
	}
	for _, m := range later {
		if m.Phase == p.Phases[f].Name {
			ph := &p.Phases[f]
			reason, changed := explain(ph, &layers.Layer{Meta: m}, p.Strict)
			ph.Reason, ph.Changed = placementReasons(reason, changed, p.Placements)+" (against the chain in "+src+")", changed
			return
		}
	}
}

// pullPrefix pulls the chain desc names, which must cover exactly the
// first n phases of the plan with the keys this build computes.
func (e *Engine) pullPrefix(ctx context.Context, j *job, plan *Plan, src layerSource, desc ocispec.Descriptor, n int, requireVerified bool, progress func(events.Event)) (*PullReport, error) {
	c, err := src.open(ctx, desc)
	if err != nil {
		return nil, refusal(err)
	}
	if requireVerified && !c.Trusted() {
		// The hook and --exact never reuse unverified layers: do not fetch them.
		return nil, fmt.Errorf("refused: %s, and this build takes verified layers only", c.Untrusted)
	}
	top, err := matchPlan(c, plan, j.drv.Outputs, n)
	if err != nil {
		return nil, fmt.Errorf("refused: %w", err)
	}
	return e.applyChain(ctx, src, c, top, progress)
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
// its keyed layers must be the plan's phases in order, each with the key
// computed here, built with output paths a rewrite can map to this
// derivation's. With n > 0 the chain must end in phase n-1 (a lookup by
// its key); with n = 0 the longest matching prefix is taken (a pull by
// tag). It returns the index of the last layer to apply.
func matchPlan(c *ocichain.Chain, plan *Plan, outputs map[string]string, n int) (int, error) {
	next, top := 0, -1
	for i, r := range c.Records {
		m := r.Meta
		if m.Key == "" {
			// A rewrite layer between phases (a resumed build's chain).
			if m.KindOf() != layers.KindRewrite || m.Status != layers.StatusDerived || !m.IsVerified() {
				return 0, fmt.Errorf("layer %d of the chain (%s) has no cache key and is not an exact rewrite", i+1, m.Label())
			}
		} else {
			if next >= len(plan.Phases) || (n > 0 && next >= n) {
				if n == 0 {
					break
				}
				return 0, fmt.Errorf("the chain goes on past %s, the phase its tag names", plan.Phases[n-1].Name)
			}
			ph := plan.Phases[next]
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
		if err := checkOutputs(m.Outputs, outputs); err != nil {
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
func (e *Engine) applyChain(ctx context.Context, src layerSource, c *ocichain.Chain, top int, progress func(events.Event)) (*PullReport, error) {
	t0 := time.Now()
	rep := &PullReport{Source: src.String(), SignedBy: c.SignedBy, Verified: c.Trusted(), Untrusted: c.Untrusted}
	for _, r := range c.Later {
		rep.later = append(rep.later, r.Meta)
	}
	for i := 0; i <= top; i++ {
		rep.ChainBytes += c.Layers[i].Size
		if p := c.Records[i].Meta.Phase; p != "" && c.Records[i].Meta.Key != "" {
			rep.Phases = append(rep.Phases, p)
		}
	}
	parent, start := "", 0
	twins := e.twinFinder()
	for ; start <= top; start++ {
		id, ok := twins(parent, c, start)
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
		size += c.Layers[i].Size
		rep.TarBytes += c.Records[i].Size
		if m := c.Records[i].Meta; m.Phase != "" && m.Key != "" {
			fetched = append(fetched, m.Phase)
		}
	}
	if free, err := layers.FreeSpace(e.opts.CacheDir); err == nil && uint64(rep.TarBytes) > free {
		return nil, fmt.Errorf("refused: the layers unpack to %s, the cache's filesystem has %s free", layers.FormatSize(rep.TarBytes), layers.FormatSize(int64(free)))
	}
	pkg := c.Records[top].Meta.DrvName
	progress(events.Event{Kind: events.EventPull, Bytes: size, Message: fmt.Sprintf("pulling %s of %s from %s: %d layers, %s", span(fetched), pkg, src, len(idx), layers.FormatSize(size))})
	tmp, err := os.MkdirTemp(e.opts.CacheDir, pullTmpPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	files, err := src.download(ctx, c, idx, tmp, func(n int64) { rep.Bytes += n })
	if err != nil {
		return nil, refusal(err)
	}
	var created []string
	ok := false
	defer func() {
		if !ok {
			for i := len(created) - 1; i >= 0; i-- {
				if err := e.layers.Delete(created[i]); err != nil {
					e.log.Warn("removing a half-pulled layer", zap.Error(err))
				}
			}
		}
	}()
	var screened ocichain.Screened
	for _, i := range idx {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id, err := e.applyLayer(parent, c, i, files[i], &screened)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, c.Records[i].Meta.Label(), err)
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

func (e *Engine) applyLayer(parent string, c *ocichain.Chain, i int, file string, screened *ocichain.Screened) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	rec := c.Records[i]
	meta := rec.Meta
	meta.Owner, meta.PrivateTo = 0, nil
	if !c.Trusted() {
		no := false
		meta.Verified = &no
	}
	data := map[string][]byte{}
	for _, name := range layers.ChainData {
		if v, ok := rec.Data[name]; ok {
			data[name] = v
		}
	}
	blob, err := json.Marshal(ocichain.Blob{Layer: c.Layers[i], DiffID: c.DiffIDs[i], Size: rec.Size})
	if err != nil {
		return "", err
	}
	data[layers.DataOCIBlob] = blob
	tar := ocichain.Screen(f, c.DiffIDs[i], c.LayerLimit(i), screened)
	defer tar.Close()
	l, err := e.layers.Apply(parent, meta, tar, data)
	if err != nil {
		return "", err
	}
	return l.ID, nil
}

// twinFinder returns a function that finds a layer the cache holds already
// for layer i of a chain, on parent: one applied from the same blob, or a
// verified phase layer with the same key built with the same output paths.
func (e *Engine) twinFinder() func(parent string, c *ocichain.Chain, i int) (string, bool) {
	var usable []*layers.Layer
	if all, err := e.layers.List(); err == nil {
		for _, l := range all {
			if l.Meta.Status == layers.StatusComplete || l.Meta.Status == layers.StatusDerived {
				usable = append(usable, l)
			}
		}
	}
	tree := layers.NewTree(usable)
	return func(parent string, c *ocichain.Chain, i int) (string, bool) {
		rec := c.Records[i].Meta
		if rec.Key != "" {
			if l, ok := e.layers.Lookup(rec.Key); ok && l.Parent == parent && l.Meta.IsVerified() && maps.Equal(l.Meta.Outputs, rec.Outputs) {
				return l.ID, true
			}
		}
		for _, l := range tree.Children(parent) {
			if b := e.recordedBlob(l.ID); b != nil && b.Layer.Digest == c.Layers[i].Digest && l.Meta.Key == rec.Key {
				return l.ID, true
			}
		}
		return "", false
	}
}

func (e *Engine) recordedBlob(id string) *ocichain.Blob {
	data, err := e.layers.Data(id, layers.DataOCIBlob)
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

func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Pull pulls the longest chain ref's repository holds for the phases of
// drvPath this cache misses (looked up by key); with a tag in ref, the
// longest prefix of that chain whose keys this build computes.
func (e *Engine) Pull(ctx context.Context, drvPath, ref string, ro RegistryOptions, progress func(events.Event)) (*PullReport, error) {
	if progress == nil {
		progress = func(events.Event) {}
	}
	j, err := e.prepare(ctx, drvPath, nil)
	if err != nil {
		return nil, err
	}
	plan, err := e.plan(j, PlanOptions{})
	if err != nil {
		return nil, err
	}
	rs, err := e.remoteSettings(ro)
	if err != nil {
		return nil, err
	}
	src, r, err := e.registrySource(rs, ref)
	if err != nil {
		return nil, err
	}
	if tag := r.Tag(); tag != "" {
		desc, err := r.Target().Resolve(ctx, tag)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", src, tag, ocichain.Hint(err))
		}
		c, err := src.open(ctx, desc)
		if err != nil {
			return nil, refusal(err)
		}
		top, err := matchPlan(c, plan, j.drv.Outputs, 0)
		if err != nil {
			return nil, fmt.Errorf("%s:%s refused: %w", src, tag, err)
		}
		return e.applyChain(ctx, src, c, top, progress)
	}
	first := firstToRun(plan)
	if first < 0 {
		return &PullReport{Source: src.String(), Verified: true}, nil
	}
	keys := make([]string, len(plan.Phases))
	for i, ph := range plan.Phases {
		keys[i] = ph.Key
	}
	lctx, cancel := context.WithTimeout(ctx, rs.timeout)
	n, desc, err := longestPrefix(lctx, src, keys, first)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("looking up %s in %s: %w", j.drv.Name, src, ocichain.Hint(err))
	}
	if n == 0 {
		return nil, fmt.Errorf("%s has no layers for %s beyond what this cache holds (%s onwards): push them with nixlayer push", src, j.drv.Name, plan.Phases[first].Name)
	}
	return e.pullPrefix(ctx, j, plan, src, desc, n, false, progress)
}

// pullTmpPrefix names the directories pulls download into (removed by the
// pull, or by the first process alone with the cache after a crash).
const pullTmpPrefix = "pull-"

// removeTransferLeftovers deletes downloads and compressed blobs a killed
// pull or push left; only called when no other process uses the cache.
func (e *Engine) removeTransferLeftovers() {
	for _, pat := range []string{pullTmpPrefix + "*", ".push-*", exportTmpPrefix + "*"} {
		m, _ := filepath.Glob(filepath.Join(e.opts.CacheDir, pat))
		for _, p := range m {
			os.RemoveAll(p)
		}
	}
}

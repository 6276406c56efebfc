package layercache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"go.uber.org/zap"
	"oras.land/oras-go/v2"

	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/ocichain"
)

// PushOptions for Push.
type PushOptions struct {
	// SecretKey signs the chain: the key itself, in Nix's secret-key format
	// (the caller reads its file with its own rights); default: the
	// config's secretKeyFile. Without either the chain goes unsigned, and
	// pulls refuse it unless --no-check-sigs.
	SecretKey string
	Registry  RegistryOptions
}

// PushReport says what a push sent.
type PushReport struct {
	ocichain.PushResult
	Target   string        `json:"target"`
	Phases   []string      `json:"phases"`
	SignedBy string        `json:"signedBy,omitempty"`
	Duration time.Duration `json:"duration"`
}

// Push uploads the chain that ends in top to ref (registry/repo[:tag]):
// every layer blob once, and a signed manifest for every phase prefix,
// tagged by its key (plus ref's tag for the whole chain).
func (c *Cache) Push(ctx context.Context, top, ref string, o PushOptions) (*PushReport, error) {
	rs, err := c.settings(o.Registry)
	if err != nil {
		return nil, err
	}
	r, err := openRegistry(rs, ref)
	if err != nil {
		return nil, err
	}
	key, err := signingKey(rs, o.SecretKey)
	if err != nil {
		return nil, err
	}
	rep, err := c.pushChain(ctx, r.Target(), top, ocichain.PushOptions{KeyTags: true, Tag: r.Tag(), Key: key, Stall: rs.timeout})
	if err != nil {
		return nil, fmt.Errorf("pushing to %s: %w", r, ocichain.Hint(err))
	}
	rep.Target = r.String()
	return rep, nil
}

// signingKey is the given key (its text), else the config's secretKeyFile,
// else none.
func signingKey(rs *settings, secretKey string) (*signature.SecretKey, error) {
	if secretKey != "" {
		return ocichain.ParseSecretKey(secretKey)
	}
	if rs.cfg.SecretKeyFile == "" {
		return nil, nil
	}
	return ocichain.LoadSecretKey(rs.cfg.SecretKeyFile)
}

// pushChain pushes the chain under top to a target and records each
// layer's blob, so the next push of it compresses and sends nothing.
func (c *Cache) pushChain(ctx context.Context, t oras.Target, top string, o ocichain.PushOptions) (*PushReport, error) {
	t0 := time.Now()
	chain, err := layers.WholeChain(c.Layers, top)
	if err != nil {
		return nil, err
	}
	rep := &PushReport{}
	var ls []ocichain.Layer
	for _, l := range chain {
		if err := pushable(l); err != nil {
			return nil, err
		}
		rec := ocichain.Record{Meta: l.Meta, Data: map[string][]byte{}}
		rec.Meta.Owner, rec.Meta.PrivateTo = 0, nil
		for _, name := range layers.ChainData {
			if b, err := c.Layers.Data(l.ID, name); err == nil {
				rec.Data[name] = b
			}
		}
		id := l.ID
		ls = append(ls, ocichain.Layer{Record: rec, Blob: c.recordedBlob(id), Diff: func() (io.ReadCloser, error) { return c.Layers.Diff(id) }})
		if l.Meta.Phase != "" {
			rep.Phases = append(rep.Phases, l.Meta.Phase)
		}
	}
	if o.TmpDir == "" {
		o.TmpDir = c.Dir
	}
	if o.Key != nil {
		rep.SignedBy = o.Key.ToPublicKey().Name
	}
	res, err := ocichain.Push(ctx, t, ls, o)
	if err != nil {
		return nil, err
	}
	rep.PushResult = *res
	for i, b := range res.Blobs {
		if old := ls[i].Blob; old != nil && jsonEqual(*old, b) {
			continue
		}
		if data, err := json.Marshal(b); err == nil {
			if err := c.Layers.SetData(chain[i].ID, layers.DataOCIBlob, data); err != nil {
				c.Log.Warn("recording a pushed blob", zap.Error(err))
			}
		}
	}
	rep.Duration = time.Since(t0)
	return rep, nil
}

// pushable: only what a build may reuse leaves the machine.
func pushable(l *layers.Layer) error {
	switch {
	case l.Meta.Status == layers.StatusRunning:
		return fmt.Errorf("layer %s is still being written", layers.Short(l.ID))
	case l.Meta.Status == layers.StatusFailed:
		return fmt.Errorf("layer %s is the failed %s", layers.Short(l.ID), l.Meta.Phase)
	case l.Meta.Status == layers.StatusStale:
		return fmt.Errorf("layer %s (%s) is stale: an audit found it differs from a clean build", layers.Short(l.ID), l.Meta.Phase)
	case !l.Meta.IsVerified():
		return fmt.Errorf("layer %s (%s) is not verified (it rests on an inexact rewrite, --from or an untrusted pull)", layers.Short(l.ID), l.Meta.Label())
	case l.Meta.KindOf() != layers.KindPhase && l.Meta.KindOf() != layers.KindRewrite:
		return fmt.Errorf("layer %s is a %s layer, not part of a build's chain", layers.Short(l.ID), l.Meta.KindOf())
	case l.Meta.Status == layers.StatusDerived && l.Meta.KindOf() == layers.KindPhase:
		return fmt.Errorf("layer %s (%s) was built by --from, not for its key", layers.Short(l.ID), l.Meta.Phase)
	}
	return nil
}

// PushBuilt pushes a chain a build or a learner just made to the config's
// pushTo; a failure is a warning.
func (c *Cache) PushBuilt(ctx context.Context, top string, ro RegistryOptions, progress func(events.Event)) {
	rs, err := c.settings(ro)
	if err != nil || rs.cfg.PushTo == "" || top == "" {
		return
	}
	progress(events.Event{Kind: events.EventPush, Message: "pushing the chain to " + rs.cfg.PushTo})
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep, err := c.Push(pctx, top, rs.cfg.PushTo, PushOptions{Registry: ro})
	if err != nil {
		progress(events.Event{Kind: events.EventWarning, Message: "push failed: " + logtail.FirstLine(err.Error())})
		return
	}
	signed := "unsigned"
	if rep.SignedBy != "" {
		signed = "signed by " + rep.SignedBy
	}
	progress(events.Event{Kind: events.EventPushed, Bytes: rep.Uploaded, Elapsed: rep.Duration, Message: fmt.Sprintf("pushed %s to %s: %d layers (%s), %s sent, %s", span(rep.Phases), rep.Target, len(rep.Blobs), layers.FormatSize(rep.LayerBytes), layers.FormatSize(rep.Uploaded), signed)})
}

// jsonEqual compares two values by their JSON form.
func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

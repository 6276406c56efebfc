package ocichain

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"go.podman.io/storage/pkg/archive"

	"github.com/nixlayer/nixlayer/layers"
)

func compressor(t *testing.T, kind string, w io.Writer) io.WriteCloser {
	t.Helper()
	c := map[string]archive.Compression{"zstd": archive.Zstd, "gzip": archive.Gzip}[kind]
	zw, err := archive.CompressStream(w, c)
	if err != nil {
		t.Fatal(err)
	}
	return zw
}

func key(i byte) string { return strings.Repeat(string("0123456789abcdef"[i%16]), 64) }

// testChain is three phase layers with small tars.
func testChain(t *testing.T) []Layer {
	var out []Layer
	for i, ph := range []string{"unpackPhase", "buildPhase", "installPhase"} {
		data := mkTar(t, entry{hdr: tar.Header{Name: "build/" + ph}, body: strings.Repeat(ph, 200)})
		out = append(out, Layer{
			Record: Record{
				Meta: layers.Meta{Status: layers.StatusComplete, Key: key(byte(i + 1)), Phase: ph, Index: i, DrvName: "hello-1",
					Outputs: map[string]string{"out": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-1"}, Started: time.Unix(1700000000+int64(i), 0)},
				Data: map[string][]byte{"log": []byte("log of " + ph)},
			},
			Diff: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		})
	}
	return out
}

func keys(t *testing.T, name string) (*signature.SecretKey, signature.PublicKey) {
	sk, pk, err := signature.GenerateKeypair(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &sk, pk
}

// A chain pushed into a layout is found by the key of each prefix, its
// records and blobs come back digest-checked, and a second push sends
// nothing.
func TestPushLookupOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := OpenLayout(ctx, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	sk, pk := keys(t, "ci-1")
	chain := testChain(t)
	res, err := Push(ctx, store, chain, PushOptions{KeyTags: true, Tag: "hello", Key: sk, TmpDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsSent != 3 || res.Uploaded == 0 || len(res.Tags) != 4 {
		t.Fatalf("first push: %+v", res)
	}
	for i := range chain {
		chain[i].Blob = &res.Blobs[i]
	}
	again, err := Push(ctx, store, chain, PushOptions{KeyTags: true, Tag: "hello", Key: sk, TmpDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if again.Uploaded != 0 || again.BlobsSent != 0 || again.ManifestsSent != 0 {
		t.Fatalf("second push of the same chain sent something: %+v", again)
	}

	desc, ok, err := Lookup(ctx, store, key(2))
	if err != nil || !ok {
		t.Fatalf("lookup of the buildPhase key: %v %v", ok, err)
	}
	if _, ok, _ := Lookup(ctx, store, key(9)); ok {
		t.Fatal("an unknown key was found")
	}
	trust := Trust{Keys: []signature.PublicKey{pk}}
	c, err := Open(ctx, store, desc, trust, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Records) != 2 || c.Records[1].Meta.Phase != "buildPhase" || string(c.Records[1].Data["log"]) != "log of buildPhase" || c.SignedBy != "ci-1" {
		t.Fatalf("the buildPhase prefix: %d records, signed by %q", len(c.Records), c.SignedBy)
	}
	if len(c.Later) != 1 || c.Later[0].Meta.Phase != "installPhase" {
		t.Fatalf("the records after the buildPhase prefix: %+v", c.Later)
	}
	files, err := Download(ctx, store, c, []int{0, 1}, t.TempDir(), time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(files[1])
	out, err := io.ReadAll(Screen(f, c.DiffIDs[1], c.LayerLimit(1), nil))
	f.Close()
	if err != nil || !bytes.Contains(out, []byte("buildPhasebuildPhase")) {
		t.Fatalf("layer 2 after download and screening: %v", err)
	}

	// Trust: an unknown key, no signature, a forged signature.
	_, other := keys(t, "laptop-1")
	if _, err := Open(ctx, store, desc, Trust{Keys: []signature.PublicKey{other}}, false); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "signed by ci-1, which is not in trustedLayerKeys") {
		t.Fatalf("unknown key: %v", err)
	}
	c2, err := Open(ctx, store, desc, Trust{NoCheckSigs: true}, false)
	if err != nil || c2.Trusted() || c2.Untrusted == "" {
		t.Fatalf("--no-check-sigs: %v, trusted %v", err, c2 != nil && c2.Trusted())
	}
	forged := Trust{Keys: []signature.PublicKey{{Name: "ci-1", Data: other.Data}}}
	if _, err := Open(ctx, store, desc, forged, false); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("a key named like the signer's: %v", err)
	}
	if _, err := Push(ctx, store, chain, PushOptions{Tag: "unsigned", TmpDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	udesc, err := store.Resolve(ctx, "unsigned")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, store, udesc, trust, false); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned chain: %v", err)
	}

	// A tampered blob fails its digest check.
	blob := filepath.Join(dir, "blobs", "sha256", c.Layers[1].Digest.Encoded())
	os.Chmod(blob, 0o644)
	data, _ := os.ReadFile(blob)
	data[len(data)/2] ^= 0xff
	os.WriteFile(blob, data, 0o644)
	if _, err := Download(ctx, store, c, []int{1}, t.TempDir(), time.Minute, nil); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("tampered blob: %v", err)
	}
}

// An exported layout travels as an archive (how nixlayer daemon hands a
// user an export) and is added to the user's layout: the images already
// there stay, the signed chain opens as it was.
func TestLayoutArchiveIntoLayout(t *testing.T) {
	ctx := context.Background()
	sk, pk := keys(t, "ci-1")
	stageDir := t.TempDir()
	stage, err := OpenLayout(ctx, stageDir, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, stage, testChain(t), PushOptions{Tag: "hello", Key: sk, TmpDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	archivePath := filepath.Join(t.TempDir(), "layout.tar")
	f, err := os.Create(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLayoutTar(stageDir, f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	mine := t.TempDir()
	have, err := OpenLayout(ctx, mine, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, have, testChain(t)[:1], PushOptions{Tag: "older", TmpDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := CopyFromLayoutTar(ctx, archivePath, mine, "hello"); err != nil {
		t.Fatal(err)
	}
	got, err := OpenLayout(ctx, mine, false)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := LayoutTags(ctx, got)
	if err != nil || strings.Join(tags, " ") != "hello older" {
		t.Fatalf("tags after adding the archive: %v %v", tags, err)
	}
	desc, err := got.Resolve(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, got, desc, Trust{Keys: []signature.PublicKey{pk}}, false)
	if err != nil || c.SignedBy != "ci-1" || len(c.Records) != 3 {
		t.Fatalf("the chain from the archive: %v", err)
	}
	if _, err := Download(ctx, got, c, []int{0, 1, 2}, t.TempDir(), time.Minute, nil); err != nil {
		t.Fatalf("its blobs: %v", err)
	}
	if err := CopyFromLayoutTar(ctx, archivePath, mine, "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("a tag the archive lacks: %v", err)
	}
}

package ocichain

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixlayer/nixlayer/layers"
)

type entry struct {
	hdr  tar.Header
	body string
}

func mkTar(t *testing.T, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.body != "" {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func screenAll(data []byte, limit int64) ([]byte, *Screened, error) {
	var rep Screened
	rc := Screen(bytes.NewReader(data), digest.FromBytes(data), limit, &rep)
	defer rc.Close()
	out, err := io.ReadAll(rc)
	return out, &rep, err
}

// Hostile layer tars are refused with the entry named.
func TestScreenRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		tar  []entry
		want string
	}{
		"dotdot":       {[]entry{{hdr: tar.Header{Name: "build/../../etc/passwd"}, body: "x"}}, "leaves the layer"},
		"absolute":     {[]entry{{hdr: tar.Header{Name: "/etc/passwd"}, body: "x"}}, "is absolute"},
		"hardlink out": {[]entry{{hdr: tar.Header{Name: "build/l", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"}}}, "hard link"},
		"device":       {[]entry{{hdr: tar.Header{Name: "build/sda", Typeflag: tar.TypeBlock, Devmajor: 8}}}, "device node"},
		"chardev":      {[]entry{{hdr: tar.Header{Name: "build/mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1}}}, "device node"},
	} {
		t.Run(name, func(t *testing.T) {
			data := mkTar(t, tc.tar...)
			_, _, err := screenAll(data, int64(len(data)))
			if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a hostile-layer error with %q", err, tc.want)
			}
		})
	}
}

// A layer that unpacks to more than its record says is refused before
// its content is written; so is one whose tar is not the one its image names.
func TestScreenSizeAndDigest(t *testing.T) {
	data := mkTar(t, entry{hdr: tar.Header{Name: "build/big"}, body: strings.Repeat("x", 100000)})
	if _, _, err := screenAll(data, 50000); !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "larger than its record") {
		t.Fatalf("oversized layer: %v", err)
	}
	rc := Screen(bytes.NewReader(data), digest.FromString("something else"), int64(len(data)), nil)
	_, err := io.ReadAll(rc)
	if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "its image says") {
		t.Fatalf("wrong diff_id: %v", err)
	}
}

// setuid/setgid bits and privileged xattrs are neutralised; the rest of the
// tree, symlinks and whiteouts included, passes unchanged.
func TestScreenNeutralises(t *testing.T) {
	data := mkTar(t,
		entry{hdr: tar.Header{Name: "build/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		entry{hdr: tar.Header{Name: "build/su", Mode: 0o4755}, body: "#!/bin/sh\n"},
		entry{hdr: tar.Header{Name: "build/cap", Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x", "SCHILY.xattr.user.keep": "y"}}, body: "bin"},
		entry{hdr: tar.Header{Name: "build/link", Typeflag: tar.TypeSymlink, Linkname: "/nix/store/abc-x/bin/x"}},
		entry{hdr: tar.Header{Name: "build/.wh.gone"}},
	)
	out, rep, err := screenAll(data, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.SetID.Load() != 1 || rep.Xattrs.Load() != 1 {
		t.Fatalf("neutralised %d set-id bits, %d xattrs; want 1, 1", rep.SetID.Load(), rep.Xattrs.Load())
	}
	seen := map[string]*tar.Header{}
	if err := layers.EachTarEntry(bytes.NewReader(out), func(h *tar.Header, _ io.Reader) error {
		seen[h.Name] = h
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 5 {
		t.Fatalf("entries after screening: %v", seen)
	}
	if m := seen["build/su"].Mode; m != 0o755 {
		t.Errorf("setuid file mode %o, want 755", m)
	}
	if m := seen["build/"].Mode; m != 0o1777 {
		t.Errorf("sticky directory mode %o changed", m)
	}
	if p := seen["build/cap"].PAXRecords; p["SCHILY.xattr.security.capability"] != "" || p["SCHILY.xattr.user.keep"] != "y" {
		t.Errorf("xattrs after screening: %v", p)
	}
	if seen["build/link"].Linkname != "/nix/store/abc-x/bin/x" {
		t.Errorf("symlink target changed: %q", seen["build/link"].Linkname)
	}
}

// Compressed layers (zstd as pushed, gzip from other tools) are read too.
func TestScreenDecompresses(t *testing.T) {
	data := mkTar(t, entry{hdr: tar.Header{Name: "build/a"}, body: "hello"})
	for _, c := range []string{"zstd", "gzip"} {
		var buf bytes.Buffer
		w := compressor(t, c, &buf)
		w.Write(data)
		w.Close()
		rc := Screen(&buf, digest.FromBytes(data), int64(len(data)), nil)
		out, err := io.ReadAll(rc)
		if err != nil || !bytes.Contains(out, []byte("hello")) {
			t.Fatalf("%s layer: %v", c, err)
		}
	}
}

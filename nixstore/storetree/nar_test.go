package storetree

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/internal/nixtest"
	"github.com/nixlayer/nixlayer/nixstore"
)

// narTrees builds test trees and returns their roots by name.
func narTrees(t *testing.T) map[string]string {
	d := t.TempDir()
	trees := map[string]string{}
	add := func(name string) string { p := filepath.Join(d, name); trees[name] = p; return p }

	nixtest.Write(t, add("file"), "hello\n", 0o644)
	nixtest.Write(t, add("emptyfile"), "", 0o644)
	nixtest.Write(t, add("exec"), "#!/bin/sh\necho 12345678\n", 0o755)
	nixtest.Write(t, add("groupexec"), "x", 0o654) // only group/other exec: not executable in a NAR
	nixtest.Symlink(t, "/nix/store/does-not-exist", add("symlink"))
	if err := os.Mkdir(add("emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 70000) + "tail"
	tree := add("tree")
	nixtest.Write(t, filepath.Join(tree, "a"), "a", 0o644)
	nixtest.Write(t, filepath.Join(tree, "B"), "upper case sorts first", 0o644)
	nixtest.Write(t, filepath.Join(tree, "a.b"), "dot", 0o600)
	nixtest.Write(t, filepath.Join(tree, "a-b"), "dash", 0o700)
	nixtest.Write(t, filepath.Join(tree, "sub", "deep", "big"), big, 0o644)
	nixtest.Write(t, filepath.Join(tree, "sub", "eight888"), "12345678", 0o755)
	nixtest.Write(t, filepath.Join(tree, "ünï"), "unicode name", 0o444)
	nixtest.Symlink(t, "a", filepath.Join(tree, "link"))
	nixtest.Symlink(t, "../..", filepath.Join(tree, "sub", "deep", "up"))
	nixtest.Symlink(t, "dangling/target/with a space", filepath.Join(tree, "dangling"))
	if err := os.MkdirAll(filepath.Join(tree, "empty", "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	return trees
}

func TestNARHashMatchesNix(t *testing.T) {
	nixtest.NeedNix(t)
	for name, p := range narTrees(t) {
		t.Run(name, func(t *testing.T) {
			sum, size, err := NARHash(p)
			if err != nil {
				t.Fatal(err)
			}
			// nix-store --dump | sha256sum
			dump, err := exec.Command("nix-store", "--dump", p).Output()
			if err != nil {
				t.Fatalf("nix-store --dump %s: %v", p, err)
			}
			if want := sha256.Sum256(dump); want != sum {
				t.Errorf("NARHash = %x, nix-store --dump | sha256sum = %x", sum, want)
			}
			if size != uint64(len(dump)) {
				t.Errorf("NAR size = %d, nix-store --dump gives %d bytes", size, len(dump))
			}
			// nix-hash --type sha256
			if want := nixtest.Out(t, "nix-hash", "--type", "sha256", p); want != hex.EncodeToString(sum[:]) {
				t.Errorf("NARHash = %x, nix-hash = %s", sum, want)
			}
		})
	}
}

func TestNARHashOfStorePaths(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.Offline(t)
	// A built output (only bash builtins are available to the builder, so
	// it is a single file) and a source tree Nix copied and hashed itself.
	drv := instantiateExpr(t, `derivation { name = "narhash-`+nixtest.Salt()+`"; system = builtins.currentSystem; builder = `+nixtest.BashBuilder+`;
	  args = [ "-c" "echo hi > $out" ]; }`)
	built := nixtest.Out(t, "nix-store", "--realise", "--no-gc-warning", drv)
	tree := narTrees(t)["tree"]
	src := nixtest.Out(t, "nix-instantiate", "--eval", "--read-write-mode", "-E",
		`"${builtins.path { path = `+tree+`; name = "tree-`+nixtest.Salt()+`"; }}"`)
	src = strings.Trim(src, `"`)
	for _, out := range []string{built, src} {
		sum, size, err := NARHash(out)
		if err != nil {
			t.Fatal(err)
		}
		if want := nixtest.Out(t, "nix-store", "-q", "--hash", out); want != FormatHashBase32(sum) {
			t.Errorf("NARHash(%s) = %s, nix-store -q --hash = %s", out, FormatHashBase32(sum), want)
		}
		if want := nixtest.Out(t, "nix-store", "-q", "--size", out); want != strconv.FormatUint(size, 10) {
			t.Errorf("NAR size %d, nix-store -q --size = %s", size, want)
		}
	}
}

func TestNARHashErrors(t *testing.T) {
	if _, _, err := NARHash("/nonexistent/path"); err == nil || !strings.Contains(err.Error(), "/nonexistent/path") {
		t.Errorf("missing path: %v", err)
	}
	if _, _, err := NARHash("/dev/null"); err == nil || !strings.Contains(err.Error(), "/dev/null") {
		t.Errorf("device: %v", err)
	}
}

func TestFormatHashBase32(t *testing.T) {
	sum := sha256.Sum256([]byte("hi"))
	nixtest.NeedNix(t)
	want := nixtest.Out(t, "nix-hash", "--type", "sha256", "--to-base32", "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4")
	if got := FormatHashBase32(sum); got != "sha256:"+want {
		t.Errorf("FormatHashBase32 = %s, nix-hash --to-base32 = %s", got, want)
	}
}

// TestNARHashKnownValues pins the NAR hashes and sizes of the test trees
// (checked against nix-store --dump by TestNARHashMatchesNix, and equal to
// what nixlayer's own serializer gave before go-nix's replaced it), so a
// change of serializer is caught without Nix.
func TestNARHashKnownValues(t *testing.T) {
	want := map[string]struct {
		hash string
		size uint64
	}{
		"file":      {"sha256:1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13", 120},
		"emptyfile": {"sha256:77ac62e2629d8e45f624589c0c8bf99e24b3a722349bf1e79bc186008534e246", 112},
		"exec":      {"sha256:265f8940f169d6afad5e271a233040b24ab45a73b173533f2b83c0008f310ebd", 168},
		"groupexec": {"sha256:2ca0b8ce996f865db37619bfe91023559305aad8158042fc6ddb0ef1d43c5b67", 120},
		"symlink":   {"sha256:b6ede657ce6ba68fc0c2d4a7755093fc5a3a26292f98dded75d7982750356532", 144},
		"emptydir":  {"sha256:a50a5ab6d992f5598edd92105059fae9acfc192981e08bd88534c2167e92526a", 96},
		"tree":      {"sha256:8e8958333970ca3d604891f4e3c4860ab6a97a1ced006e96cf5ab76c0a4a3fe1", 1122800},
	}
	trees := narTrees(t)
	if len(trees) != len(want) {
		t.Fatalf("%d trees, %d known values", len(trees), len(want))
	}
	for name, p := range trees {
		sum, size, err := NARHash(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := nixstore.FormatHash(sum); got != want[name].hash || size != want[name].size {
			t.Errorf("%s: NAR %s (%d bytes), want %s (%d bytes)", name, got, size, want[name].hash, want[name].size)
		}
	}
}

// FormatHashBase32 renders a SHA-256 digest as "sha256:<nixbase32>", the
// form nix-store -q --hash prints.
func FormatHashBase32(sum [32]byte) string {
	return "sha256:" + nixbase32.EncodeToString(sum[:])
}

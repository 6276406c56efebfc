package nixbuild

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadBuilderScriptOnlyRegularStoreFiles(t *testing.T) {
	store := t.TempDir()
	t.Setenv("NIX_STORE_DIR", store)
	pkg := filepath.Join(store, "00000000000000000000000000000000-stdenv")
	if err := os.Mkdir(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(pkg, "default-builder.sh")
	if err := os.WriteFile(script, []byte("genericBuild\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readBuilderScript(script); err != nil || string(got) != "genericBuild\n" {
		t.Fatalf("store script: %q %v", got, err)
	}
	big := filepath.Join(pkg, "big.sh")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), maxBuilderScript+1), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(pkg, "fifo.sh")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(pkg, "link.sh")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/dev/zero":                   "not a file in the Nix store",
		store + "/../../dev/zero":     "not a file in the Nix store",
		"relative/default-builder.sh": "not a file in the Nix store",
		big:                           "larger than 1 MiB",
		fifo:                          "not a regular file",
		link:                          "only a regular file in the store",
		pkg:                           "not a regular file",
	} {
		if _, err := readBuilderScript(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error saying %q", p, err, want)
		}
	}
}

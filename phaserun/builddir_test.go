package phaserun

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The build directory is the derivation's: what it planted where root
// writes the attribute files is replaced, never written through or read.
func TestWriteFileInReplacesWhatTheBuildPlanted(t *testing.T) {
	tmp := t.TempDir()
	outside := filepath.Join(tmp, "outside")
	if err := os.WriteFile(outside, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(tmp, "build")
	if err := os.Mkdir(build, 0o755); err != nil {
		t.Fatal(err)
	}
	plant := map[string]func(p string) error{
		"symlink":   func(p string) error { return os.Symlink(outside, p) },
		"hardlink":  func(p string) error { return os.Link(outside, p) },
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"directory": func(p string) error { return os.MkdirAll(filepath.Join(p, "sub"), 0o755) },
		"tmp-link": func(p string) error {
			return os.Symlink(outside, p+".nixlayer-new")
		},
	}
	dir, err := os.OpenRoot(build)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for name, fn := range plant {
		if err := fn(filepath.Join(build, name)); err != nil {
			t.Fatal(err)
		}
		if err := writeFileIn(dir, name, []byte("attribute"), 0o644); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fi, err := os.Lstat(filepath.Join(build, name))
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: not replaced by a regular file: %v %v", name, fi, err)
		}
		if got, _ := os.ReadFile(filepath.Join(build, name)); string(got) != "attribute" {
			t.Errorf("%s: holds %q", name, got)
		}
		if got, _ := os.ReadFile(outside); string(got) != "host file" {
			t.Fatalf("%s: written through to the host file: %q", name, got)
		}
	}
	// Already right: left alone (the same inode, no copy-up in a layer).
	before, _ := os.Stat(filepath.Join(build, "symlink"))
	if err := writeFileIn(dir, "symlink", []byte("attribute"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(build, "symlink"))
	if !os.SameFile(before, after) {
		t.Error("a file with the right content was rewritten")
	}
}

func TestReadReportIsBounded(t *testing.T) {
	data, err := readReport(strings.NewReader("phases"), "phase list")
	if err != nil || string(data) != "phases" {
		t.Fatalf("small report: %q %v", data, err)
	}
	_, err = readReport(io.LimitReader(zeros{}, maxStepReport+1), "phase list")
	if err == nil || !strings.Contains(err.Error(), "more than 64 MiB of phase list") {
		t.Fatalf("oversized report: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

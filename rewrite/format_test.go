package rewrite

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"os"
	"testing"
)

// FormatOf recognizes what the standard writers and the Go linker make.
func TestFormatOf(t *testing.T) {
	var gz, zp bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write([]byte("hello"))
	gw.Close()
	zw := zip.NewWriter(&zp)
	w, _ := zw.Create("a")
	w.Write([]byte("hello"))
	zw.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	elf, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		data []byte
		want Format
	}{
		{gz.Bytes(), FormatGzip},
		{zp.Bytes(), FormatZip},
		{elf, FormatELF},
		{[]byte("#!/bin/sh\necho hello\n"), ""},
		{nil, ""},
	} {
		if got := FormatOf(c.data); got != c.want {
			t.Errorf("FormatOf(%q…) = %q, want %q", c.data[:min(len(c.data), 8)], got, c.want)
		}
	}
}

package layers

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// EachTarEntry hands over every entry with its content, returns fn's error
// as is and names a broken archive.
func TestEachTarEntry(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"a", "b"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(name))})
		tw.Write([]byte(name))
	}
	tw.Close()

	var got []string
	err := EachTarEntry(bytes.NewReader(buf.Bytes()), func(hdr *tar.Header, content io.Reader) error {
		body, err := io.ReadAll(content)
		got = append(got, hdr.Name+"="+string(body))
		return err
	})
	if err != nil || strings.Join(got, " ") != "a=a b=b" {
		t.Fatalf("entries %q, error %v", got, err)
	}

	stop := errors.New("stop")
	if err := EachTarEntry(bytes.NewReader(buf.Bytes()), func(*tar.Header, io.Reader) error { return stop }); err != stop {
		t.Errorf("fn's error came back as %v", err)
	}
	// Cut inside the second header.
	err = EachTarEntry(bytes.NewReader(buf.Bytes()[:1100]), func(*tar.Header, io.Reader) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "reading layer tar: ") {
		t.Errorf("truncated tar: %v", err)
	}
}

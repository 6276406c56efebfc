package rpcframe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func read(s string) ([]byte, error) {
	data, err := Read(bufio.NewReader(strings.NewReader(s)), 1<<20)
	return data, err
}

// A message over the limit is refused from its header, before anything
// is allocated for it; so are endless header lines and endless headers.
func TestReadBounds(t *testing.T) {
	body := `{"jsonrpc":"2.0","method":"x"}`
	if data, err := read("\r\n" + string(Frame([]byte(body)))); err != nil || string(data) != body {
		t.Fatalf("a small message after a blank line: %q, %v", data, err)
	}
	var big *TooLargeError
	if _, err := read(fmt.Sprintf("Content-Length: %d\r\n\r\n{", int64(2)<<30)); !errors.As(err, &big) || big.Size != 2<<30 {
		t.Errorf("a 2 GiB message: %v", err)
	}
	if _, err := read("X-Junk: " + strings.Repeat("a", 10<<20)); err == nil || !strings.Contains(err.Error(), "header line longer") {
		t.Errorf("a 10 MiB header line: %v", err)
	}
	if _, err := read(strings.Repeat("A: b\r\n", 100)); err == nil {
		t.Error("endless headers accepted")
	}
	for _, bad := range []string{"Content-Length: -5\r\n\r\n", "Content-Length: x\r\n\r\n", "Content-Length: 9\r\n\r\n{}"} {
		if _, err := read(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	two := bytes.Repeat(Frame([]byte("{}")), 2)
	in := bufio.NewReader(bytes.NewReader(two))
	for i := range 2 {
		if data, err := Read(in, 10); err != nil || string(data) != "{}" {
			t.Errorf("message %d: %q, %v", i, data, err)
		}
	}
}

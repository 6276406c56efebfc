// Package rpcframe is the Content-Length framing of JSON-RPC messages (as
// LSP frames them) read within bounds: the language server reads its
// editor's messages with it, the daemon its users' requests. jsonrpc2's
// own reader allocates whatever a header announces (up to 2 GiB) and reads
// header lines without end.
package rpcframe

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxHeaderLine bounds a header line, maxHeaderLines the headers of one
// message.
const (
	MaxHeaderLine  = 1024
	maxHeaderLines = 16
)

// TooLargeError: a message's Content-Length is over the reader's limit.
type TooLargeError struct{ Size, Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("a message of %d bytes is over the limit of %d bytes", e.Size, e.Limit)
}

// Read reads one framed message of at most limit bytes: its body. Blank lines before the headers are skipped; a body
// over the limit is refused from its header, before it is read.
func Read(in *bufio.Reader, limit int64) ([]byte, error) {
	length := int64(-1)
	for lines := 0; ; lines++ {
		if lines > maxHeaderLines {
			return nil, fmt.Errorf("more than %d header lines", maxHeaderLines)
		}
		line, err := readLine(in)
		if err != nil {
			return nil, err
		}
		if line == "" {
			if length < 0 {
				lines-- // stray blank lines between messages
				continue
			}
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("invalid header line %q", line)
		}
		if !strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			continue
		}
		length, err = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil || length <= 0 {
			return nil, fmt.Errorf("invalid Content-Length %q", value)
		}
	}
	if length > limit {
		return nil, &TooLargeError{Size: length, Limit: limit}
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(in, data); err != nil {
		return nil, fmt.Errorf("reading a message body of %d bytes: %w", length, err)
	}
	return data, nil
}

// readLine reads a header line of at most MaxHeaderLine bytes, trimmed.
func readLine(in *bufio.Reader) (string, error) {
	var line []byte
	for {
		part, more, err := in.ReadLine()
		if err != nil {
			return "", fmt.Errorf("reading a header line: %w", err)
		}
		line = append(line, part...)
		if len(line) > MaxHeaderLine {
			return "", fmt.Errorf("a header line longer than %d bytes", MaxHeaderLine)
		}
		if !more {
			return strings.TrimSpace(string(line)), nil
		}
	}
}

// Frame is body with its Content-Length header, ready to write at once.
func Frame(body []byte) []byte {
	return append([]byte(fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))), body...)
}

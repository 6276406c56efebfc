package lsp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"go.lsp.dev/jsonrpc2"
)

// stream is jsonrpc2's Content-Length framing with one difference: a
// message whose body is not valid JSON-RPC is answered with a parse error
// (id null) instead of tearing the connection down, so a client's
// malformed message never stops the server. Only broken framing (a bad
// header, a closed pipe) ends the stream.
type stream struct {
	out jsonrpc2.Stream // writes: the library's own framing
	in  *bufio.Reader
	rwc io.ReadWriteCloser
	mu  sync.Mutex
	// onDrop is told about messages dropped without an answer.
	onDrop func(data []byte, err error)
}

func newStream(rwc io.ReadWriteCloser) *stream {
	return &stream{out: jsonrpc2.NewStream(rwc), in: bufio.NewReader(rwc), rwc: rwc}
}

func (s *stream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	for {
		data, n, err := s.readFrame()
		if err != nil {
			return nil, n, err
		}
		msg, err := jsonrpc2.DecodeMessage(data)
		if err == nil {
			return msg, n, nil
		}
		// Answer when the message has an id; a response with id null
		// would make some clients drop the connection, so an id-less
		// message is only logged.
		if resp := parseErrorResponse(data, err); resp != nil {
			if werr := s.writeRaw(resp); werr != nil {
				return nil, n, werr
			}
		} else if s.onDrop != nil {
			s.onDrop(data, err)
		}
	}
}

func (s *stream) readFrame() ([]byte, int64, error) {
	var total, length int64
	for {
		line, err := s.in.ReadString('\n')
		total += int64(len(line))
		if err != nil {
			return nil, total, fmt.Errorf("reading a header line: %w", err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			if length == 0 {
				continue // tolerate stray blank lines between messages
			}
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, total, fmt.Errorf("invalid header line %q", line)
		}
		if strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			length, err = strconv.ParseInt(strings.TrimSpace(value), 10, 32)
			if err != nil || length <= 0 {
				return nil, total, fmt.Errorf("invalid Content-Length %q", value)
			}
		}
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(s.in, data); err != nil {
		return nil, total, fmt.Errorf("reading a message body: %w", err)
	}
	return data, total + length, nil
}

// parseErrorResponse answers a message that could not be decoded, when
// its id can be recovered (nil otherwise).
func parseErrorResponse(data []byte, err error) []byte {
	var probe struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(data, &probe) != nil || len(probe.ID) == 0 || string(probe.ID) == "null" {
		return nil
	}
	id := probe.ID
	code := jsonrpc2.ParseError
	if errors.Is(err, jsonrpc2.ErrInvalidRequest) || json.Valid(data) {
		code = jsonrpc2.InvalidRequest
	}
	resp, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": code, "message": "malformed message: " + err.Error()},
	})
	return resp
}

func (s *stream) writeRaw(body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := fmt.Fprintf(s.rwc, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return err
}

func (s *stream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(ctx, msg)
}

func (s *stream) Close() error { return s.rwc.Close() }

// Package rpcstream is the language server's JSON-RPC stream to the
// editor: jsonrpc2's Content-Length framing, read within bounds
// (internal/rpcframe), that answers a malformed message with an error
// instead of ending the connection. Package lsp serves LSP over it.
package rpcstream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/internal/rpcframe"
)

// Stream is jsonrpc2's Content-Length framing, read within bounds
// (rpcframe), with one difference: a
// message whose body is not valid JSON-RPC is answered with a parse error
// (id null) instead of tearing the connection down, so a client's
// malformed message never stops the server. Only broken framing (a bad
// header, a closed pipe) ends the stream.
type Stream struct {
	out jsonrpc2.Stream // writes: the library's own framing
	in  *bufio.Reader
	rwc io.ReadWriteCloser
	mu  sync.Mutex
	// OnDrop is told about messages dropped without an answer.
	OnDrop func(data []byte, err error)
}

// New is a stream over rwc.
func New(rwc io.ReadWriteCloser) *Stream {
	return &Stream{out: jsonrpc2.NewStream(rwc), in: bufio.NewReader(rwc), rwc: rwc}
}

func (s *Stream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	for {
		data, err := rpcframe.Read(s.in, maxMessage)
		n := int64(len(data))
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
		} else if s.OnDrop != nil {
			s.OnDrop(data, err)
		}
	}
}

// maxMessage bounds one message from the editor (a buffer's whole text
// comes in didOpen and didChange).
const maxMessage = 256 << 20

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

func (s *Stream) writeRaw(body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.rwc.Write(rpcframe.Frame(body))
	return err
}

func (s *Stream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(ctx, msg)
}

func (s *Stream) Close() error { return s.rwc.Close() }

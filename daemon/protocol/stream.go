package protocol

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/internal/rpcframe"
)

// The daemon's messages are framed as jsonrpc2's NewStream frames them,
// read with the bounds a root service needs against any local user
// (rpcframe): a request is at most MaxRequest bytes, its header lines are
// short.
const (
	// MaxRequest bounds one message to the daemon: requests name .drv
	// paths and layer ids, far below it.
	MaxRequest = 1 << 20
	// MaxAnswer bounds one message from the daemon (a chunk of a layer's
	// file, base64, or a package's logs).
	MaxAnswer = 256 << 20
)

// BoundedStream is a jsonrpc2.Stream reading messages of at most limit
// bytes. A message over it is answered (when refuse is set: the daemon's
// side) with a JSON-RPC error without an id, as JSON-RPC does for a
// request it cannot read, and the connection ends.
type BoundedStream struct {
	conn   io.ReadWriteCloser
	in     *bufio.Reader
	limit  int64
	refuse bool

	writeMu sync.Mutex
}

// NewBoundedStream reads conn with messages of at most limit bytes;
// refuse is the daemon's side, which answers what it cannot read.
func NewBoundedStream(conn io.ReadWriteCloser, limit int64, refuse bool) *BoundedStream {
	return &BoundedStream{conn: conn, in: bufio.NewReaderSize(conn, 4096), limit: limit, refuse: refuse}
}

func (s *BoundedStream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	data, err := rpcframe.Read(s.in, s.limit)
	if err != nil {
		var big *rpcframe.TooLargeError
		if errors.As(err, &big) && s.refuse {
			err = fmt.Errorf("%w (1 MiB) for the nixlayer daemon: requests name .drv paths and layer ids", err)
			s.writeRaw(RefusalFrame(err))
		}
		return nil, 0, err
	}
	msg, err := jsonrpc2.DecodeMessage(data)
	if err != nil {
		if s.refuse {
			s.writeRaw(RefusalFrame(fmt.Errorf("the nixlayer daemon cannot read the message: %w", err)))
		}
		return nil, int64(len(data)), fmt.Errorf("decoding a message: %w", err)
	}
	return msg, int64(len(data)), nil
}

// RefusalFrame is a JSON-RPC error answer with a null id: the answer to a
// message the daemon could not read.
func RefusalFrame(err error) []byte {
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": jsonrpc2.InvalidRequest, "message": err.Error()},
	})
	return rpcframe.Frame(body)
}

func (s *BoundedStream) writeRaw(b []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

func (s *BoundedStream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return 0, fmt.Errorf("encoding a message: %w", err)
	}
	// One write: a descriptor passed with the message (FDConn) travels
	// with its first byte.
	b := rpcframe.Frame(body)
	if err := s.writeRaw(b); err != nil {
		return 0, fmt.Errorf("writing a message: %w", err)
	}
	return int64(len(b)), nil
}

func (s *BoundedStream) Close() error { return s.conn.Close() }

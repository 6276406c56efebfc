package daemon

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
// (rpcframe): a request is at most maxRequest bytes, its header lines are
// short.
const (
	// maxRequest bounds one message to the daemon: requests name .drv
	// paths and layer ids, far below it.
	maxRequest = 1 << 20
	// maxAnswer bounds one message from the daemon (a chunk of a layer's
	// file, base64, or a package's logs).
	maxAnswer = 256 << 20
)

// boundedStream is a jsonrpc2.Stream reading messages of at most limit
// bytes. A message over it is answered (when refuse is set: the daemon's
// side) with a JSON-RPC error without an id, as JSON-RPC does for a
// request it cannot read, and the connection ends.
type boundedStream struct {
	conn   io.ReadWriteCloser
	in     *bufio.Reader
	limit  int64
	refuse bool

	writeMu sync.Mutex
}

func newBoundedStream(conn io.ReadWriteCloser, limit int64, refuse bool) *boundedStream {
	return &boundedStream{conn: conn, in: bufio.NewReaderSize(conn, 4096), limit: limit, refuse: refuse}
}

func (s *boundedStream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	data, err := rpcframe.Read(s.in, s.limit)
	if err != nil {
		var big *rpcframe.TooLargeError
		if errors.As(err, &big) && s.refuse {
			err = fmt.Errorf("%w (1 MiB) for the nixlayer daemon: requests name .drv paths and layer ids", err)
			s.writeRaw(refusalFrame(err))
		}
		return nil, 0, err
	}
	msg, err := jsonrpc2.DecodeMessage(data)
	if err != nil {
		if s.refuse {
			s.writeRaw(refusalFrame(fmt.Errorf("the nixlayer daemon cannot read the message: %w", err)))
		}
		return nil, int64(len(data)), fmt.Errorf("decoding a message: %w", err)
	}
	return msg, int64(len(data)), nil
}

// refusalFrame is a JSON-RPC error answer with a null id: the answer to a
// message the daemon could not read.
func refusalFrame(err error) []byte {
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": jsonrpc2.InvalidRequest, "message": err.Error()},
	})
	return rpcframe.Frame(body)
}

func (s *boundedStream) writeRaw(b []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

func (s *boundedStream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return 0, fmt.Errorf("encoding a message: %w", err)
	}
	// One write: a descriptor passed with the message (fdConn) travels
	// with its first byte.
	b := rpcframe.Frame(body)
	if err := s.writeRaw(b); err != nil {
		return 0, fmt.Errorf("writing a message: %w", err)
	}
	return int64(len(b)), nil
}

func (s *boundedStream) Close() error { return s.conn.Close() }

// decodeRequest is what the daemon makes of one framed message, as the
// connection's read loop and its handler do: the frame, the JSON-RPC
// message, for a call its params and its method's request. The fuzz target
// drives it.
func decodeRequest(in *bufio.Reader) (any, error) {
	data, err := rpcframe.Read(in, maxRequest)
	if err != nil {
		return nil, err
	}
	msg, err := jsonrpc2.DecodeMessage(data)
	if err != nil {
		return nil, err
	}
	req, ok := msg.(jsonrpc2.Request)
	if !ok {
		return msg, nil
	}
	if _, isCall := req.(*jsonrpc2.Call); !isCall {
		return req, nil
	}
	m, ok := methods[req.Method()]
	if !ok {
		return nil, fmt.Errorf("no method %q", req.Method())
	}
	var c call
	if err := json.Unmarshal(req.Params(), &c); err != nil {
		return nil, err
	}
	return m.decode(c.Request)
}

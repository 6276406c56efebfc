package daemon

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

// The daemon's own framing (Content-Length headers, as jsonrpc2's
// NewStream) with the bounds a root service needs against any local user:
// a request is at most maxRequest bytes (the library would allocate what
// the header says, up to 2 GiB) and its header lines are short.
const (
	// maxRequest bounds one message to the daemon: requests name .drv
	// paths and layer ids, far below it.
	maxRequest = 1 << 20
	// maxAnswer bounds one message from the daemon (a chunk of a layer's
	// file, base64, or a package's logs).
	maxAnswer = 256 << 20
	// maxHeaderLine bounds a header line.
	maxHeaderLine = 1024
)

// errTooLarge: a message's Content-Length is over the limit.
type errTooLarge struct{ size, limit int64 }

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("a message of %d bytes is over the nixlayer daemon's limit of %d bytes (1 MiB): requests name .drv paths and layer ids", e.size, e.limit)
}

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
	data, err := readFrame(s.in, s.limit)
	if err != nil {
		var big *errTooLarge
		if errors.As(err, &big) && s.refuse {
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

// readFrame reads one Content-Length framed message of at most limit bytes.
func readFrame(in *bufio.Reader, limit int64) ([]byte, error) {
	length := int64(-1)
	for lines := 0; ; lines++ {
		if lines > 16 {
			return nil, errors.New("too many header lines")
		}
		line, err := readLine(in)
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("invalid header line %q", line)
		}
		if strings.TrimSpace(name) != jsonrpc2.HdrContentLength {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("invalid %s %q", jsonrpc2.HdrContentLength, value)
		}
		length = n
	}
	if length < 0 {
		return nil, fmt.Errorf("missing %s header", jsonrpc2.HdrContentLength)
	}
	if length > limit {
		return nil, &errTooLarge{size: length, limit: limit}
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(in, data); err != nil {
		return nil, fmt.Errorf("reading a message of %d bytes: %w", length, err)
	}
	return data, nil
}

// readLine reads a header line of at most maxHeaderLine bytes.
func readLine(in *bufio.Reader) (string, error) {
	var line []byte
	for {
		part, more, err := in.ReadLine()
		if err != nil {
			return "", err
		}
		line = append(line, part...)
		if len(line) > maxHeaderLine {
			return "", fmt.Errorf("a header line longer than %d bytes", maxHeaderLine)
		}
		if !more {
			return strings.TrimSpace(string(line)), nil
		}
	}
}

// refusalFrame is a JSON-RPC error answer with a null id: the answer to a
// message the daemon could not read.
func refusalFrame(err error) []byte {
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": jsonrpc2.InvalidRequest, "message": err.Error()},
	})
	return frame(body)
}

func frame(body []byte) []byte {
	return append([]byte(fmt.Sprintf("%s: %d%s", jsonrpc2.HdrContentLength, len(body), jsonrpc2.HdrContentSeparator)), body...)
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
	b := frame(body)
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
	data, err := readFrame(in, maxRequest)
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

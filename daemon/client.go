package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/daemon/protocol"
	"github.com/nixlayer/nixlayer/gc"
	"github.com/nixlayer/nixlayer/inspect"
	"github.com/nixlayer/nixlayer/layercache"
	"github.com/nixlayer/nixlayer/layertree"
	"github.com/nixlayer/nixlayer/runner"
	"github.com/nixlayer/nixlayer/verify"
)

// Client is api.Service served by `nixlayer daemon`.
type Client struct {
	socket string
	fc     *protocol.FDConn
	conn   jsonrpc2.Conn
	seq    atomic.Int64

	mu      sync.Mutex
	outputs map[string]api.Output
}

// ErrNoDaemon: nothing answers on the socket.
var ErrNoDaemon = errors.New("no nixlayer daemon")

// Dial connects to the daemon at socket.
func Dial(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s: nixlayer needs it when not run as root; as root, start it with `systemctl enable --now nixlayer-daemon.socket` or `nixlayer daemon &`", ErrNoDaemon, socket)
		}
		return nil, fmt.Errorf("connecting to the nixlayer daemon at %s: %w", socket, err)
	}
	cl := &Client{socket: socket, fc: protocol.NewFDConn(c.(*net.UnixConn)), outputs: map[string]api.Output{}}
	cl.conn = jsonrpc2.NewConn(protocol.NewBoundedStream(cl.fc, protocol.MaxAnswer, false))
	cl.conn.Go(context.Background(), cl.handle)
	return cl, nil
}

// handle delivers output notifications, in order, to their request.
func (c *Client) handle(ctx context.Context, reply jsonrpc2.Replier, req jsonrpc2.Request) error {
	if req.Method() != protocol.NotifyOutput {
		if _, isCall := req.(*jsonrpc2.Call); isCall {
			return reply(ctx, nil, jsonrpc2.ErrMethodNotFound)
		}
		return nil
	}
	var o protocol.Output
	if json.Unmarshal(req.Params(), &o) != nil {
		return nil
	}
	c.mu.Lock()
	out, ok := c.outputs[o.Token]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	if o.Log != "" && out.Log != nil {
		out.Log.Write([]byte(o.Log))
	}
	if o.Event != nil && out.Progress != nil {
		out.Progress(*o.Event)
	}
	return nil
}

// call sends one request, routes its output, and cancels it on the daemon
// when ctx ends.
func (c *Client) call(ctx context.Context, method string, req any, out api.Output, result any) error {
	token := strconv.FormatInt(c.seq.Add(1), 10)
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if len(data) > protocol.MaxRequest-1024 {
		return fmt.Errorf("%s: the request is %d bytes, over the nixlayer daemon's limit of 1 MiB", method, len(data))
	}
	c.mu.Lock()
	c.outputs[token] = out
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.outputs, token)
		c.mu.Unlock()
	}()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			c.conn.Notify(context.Background(), protocol.NotifyCancel, protocol.Cancel{Token: token})
		case <-done:
		}
	}()
	var raw json.RawMessage
	_, err = c.conn.Call(ctx, method, protocol.Call{Token: token, Request: data}, &raw)
	if err == nil && result != nil && len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, result); err != nil {
			return fmt.Errorf("the nixlayer daemon's answer to %s: %w", method, err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-c.conn.Done():
			return fmt.Errorf("the nixlayer daemon closed the connection: %w", err)
		default:
		}
		return protocol.ClientError(err)
	}
	return nil
}

// ask makes one request and decodes its answer as a T.
func ask[T any](ctx context.Context, c *Client, method string, req any, out api.Output) (T, error) {
	var res T
	if err := c.call(ctx, method, req, out, &res); err != nil {
		var none T
		return none, err
	}
	return res, nil
}

// askFor is ask for an answer the caller gets as a pointer (never nil
// without an error).
func askFor[T any](ctx context.Context, c *Client, method string, req any, out api.Output) (*T, error) {
	res, err := ask[T](ctx, c, method, req, out)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) Build(ctx context.Context, req api.BuildRequest, out api.Output) (*runner.Result, error) {
	return askFor[runner.Result](ctx, c, protocol.MethodBuild, req, out)
}

func (c *Client) Plan(ctx context.Context, req api.PlanRequest, out api.Output) (*api.PlanResult, error) {
	return askFor[api.PlanResult](ctx, c, protocol.MethodPlan, req, out)
}

func (c *Client) Learn(ctx context.Context, req api.LearnRequest, out api.Output) error {
	return c.call(ctx, protocol.MethodLearn, req, out, nil)
}

func (c *Client) Verify(ctx context.Context, req api.VerifyRequest, out api.Output) (*verify.Verification, error) {
	return askFor[verify.Verification](ctx, c, protocol.MethodVerify, req, out)
}

func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	return askFor[api.Status](ctx, c, protocol.MethodStatus, struct{}{}, api.Output{})
}

func (c *Client) Results(ctx context.Context, req api.ResultsRequest) (*api.ResultsResult, error) {
	return askFor[api.ResultsResult](ctx, c, protocol.MethodResults, req, api.Output{})
}

func (c *Client) List(ctx context.Context, req api.ListRequest) (*api.ListResult, error) {
	return askFor[api.ListResult](ctx, c, protocol.MethodList, req, api.Output{})
}

func (c *Client) Log(ctx context.Context, req api.LogRequest) ([]inspect.PhaseLog, error) {
	return ask[[]inspect.PhaseLog](ctx, c, protocol.MethodLog, req, api.Output{})
}

func (c *Client) GC(ctx context.Context, req api.GCRequest, out api.Output) (*gc.Result, error) {
	return askFor[gc.Result](ctx, c, protocol.MethodGC, req, out)
}

func (c *Client) Import(ctx context.Context, req api.ImportRequest, out api.Output) ([]layercache.ImportResult, error) {
	return ask[[]layercache.ImportResult](ctx, c, protocol.MethodImport, req, out)
}

func (c *Client) Pull(ctx context.Context, req api.PullRequest, out api.Output) (*layercache.PullReport, error) {
	return askFor[layercache.PullReport](ctx, c, protocol.MethodPull, req, out)
}

func (c *Client) Push(ctx context.Context, req api.PushRequest, out api.Output) (*api.PushResult, error) {
	return askFor[api.PushResult](ctx, c, protocol.MethodPush, req, out)
}

func (c *Client) LayerFiles(ctx context.Context, req api.LayerFilesRequest) (*layertree.Files, error) {
	return askFor[layertree.Files](ctx, c, protocol.MethodLayerFiles, req, api.Output{})
}

func (c *Client) ReadLayerFile(ctx context.Context, req api.ReadLayerFileRequest) (*layertree.Data, error) {
	return askFor[layertree.Data](ctx, c, protocol.MethodReadLayerFile, req, api.Output{})
}

func (c *Client) LayerDiff(ctx context.Context, req api.LayerDiffRequest) (*layertree.Diff, error) {
	return askFor[layertree.Diff](ctx, c, protocol.MethodLayerDiff, req, api.Output{})
}

// Close ends the connection; the daemon cancels what is still running.
func (c *Client) Close() error { return c.conn.Close() }

var _ api.Service = (*Client)(nil)

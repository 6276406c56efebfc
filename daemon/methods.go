package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/daemon/protocol"
	"github.com/nixlayer/nixlayer/internal/rpcframe"
)

// method is one kind of request: decode reads its request (in the
// connection's read loop), run answers it for a session; withFile marks
// the requests that come with a descriptor (SCM_RIGHTS), which run gets.
type method struct {
	decode   func(raw json.RawMessage) (any, error)
	run      func(ctx context.Context, ss *session, req any, file *os.File, out api.Output) (any, error)
	withFile bool
}

// methods is the daemon's table: one entry per api.Service request, most
// of them an api.Local method as it is.
var methods = map[string]method{
	protocol.MethodBuild: streaming((*api.Local).Build),
	protocol.MethodPlan:  streaming((*api.Local).Plan),
	protocol.MethodLearn: serve(func(ctx context.Context, l *api.Local, r api.LearnRequest, out api.Output) (any, error) {
		return nil, l.Learn(ctx, r, out)
	}),
	protocol.MethodVerify: streaming((*api.Local).Verify),
	protocol.MethodStatus: serve(func(ctx context.Context, l *api.Local, _ struct{}, _ api.Output) (any, error) {
		return l.Status(ctx)
	}),
	protocol.MethodResults:       query((*api.Local).Results),
	protocol.MethodList:          query((*api.Local).List),
	protocol.MethodLog:           query((*api.Local).Log),
	protocol.MethodGC:            streaming((*api.Local).GC),
	protocol.MethodImport:        streaming((*api.Local).Import),
	protocol.MethodPull:          streaming((*api.Local).Pull),
	protocol.MethodPush:          streaming((*api.Local).Push),
	protocol.MethodLayerFiles:    query((*api.Local).LayerFiles),
	protocol.MethodReadLayerFile: query((*api.Local).ReadLayerFile),
	protocol.MethodLayerDiff:     query((*api.Local).LayerDiff),
	// The shell runs on the terminal the client passed (the slave side of
	// its pty), which becomes its controlling terminal.
	protocol.MethodShell: serveWithFile(func(ctx context.Context, l *api.Local, r api.ShellRequest, tty *os.File, out api.Output) (any, error) {
		return l.ShellOn(ctx, r, api.Terminal{In: tty, Out: tty, Notice: out.Log})
	}),
	// The export's layout goes, as a tar, into the pipe the client passed;
	// the client adds it to its own layout.
	protocol.MethodExport: serveWithFile(func(ctx context.Context, l *api.Local, r api.ExportRequest, pipe *os.File, out api.Output) (any, error) {
		return l.ExportTar(ctx, r, pipe, out)
	}),
}

// streaming serves an api.Local method that reports output while it runs.
func streaming[R, T any](m func(*api.Local, context.Context, R, api.Output) (T, error)) method {
	return serve(func(ctx context.Context, l *api.Local, r R, out api.Output) (any, error) {
		return m(l, ctx, r, out)
	})
}

// query serves an api.Local method that only answers.
func query[R, T any](m func(*api.Local, context.Context, R) (T, error)) method {
	return serve(func(ctx context.Context, l *api.Local, r R, _ api.Output) (any, error) {
		return m(l, ctx, r)
	})
}

// serve decodes a request of type R and calls f with the session's engine.
func serve[R any](f func(context.Context, *api.Local, R, api.Output) (any, error)) method {
	return method{
		decode: decoder[R](false),
		run: func(ctx context.Context, ss *session, req any, _ *os.File, out api.Output) (any, error) {
			return f(ctx, ss.svc, req.(R), out)
		},
	}
}

// serveWithFile is serve for a request that comes with a file (SCM_RIGHTS)
// the daemon uses for its output: a shell's terminal, an export's pipe.
func serveWithFile[R any](f func(context.Context, *api.Local, R, *os.File, api.Output) (any, error)) method {
	return method{
		decode: decoder[R](true),
		run: func(ctx context.Context, ss *session, req any, file *os.File, out api.Output) (any, error) {
			return f(ctx, ss.svc, req.(R), file, out)
		},
		withFile: true,
	}
}

// decoder reads a request of type R (an empty one for no params unless
// required).
func decoder[R any](required bool) func(json.RawMessage) (any, error) {
	return func(raw json.RawMessage) (any, error) {
		var r R
		if len(raw) == 0 && !required {
			return r, nil
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%T: %v", r, err)
		}
		return r, nil
	}
}

// decodeRequest is what the daemon makes of one framed message, as the
// connection's read loop and its handler do: the frame, the JSON-RPC
// message, for a call its params and its method's request. The fuzz target
// drives it.
func decodeRequest(in *bufio.Reader) (any, error) {
	data, err := rpcframe.Read(in, protocol.MaxRequest)
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
	var c protocol.Call
	if err := json.Unmarshal(req.Params(), &c); err != nil {
		return nil, err
	}
	return m.decode(c.Request)
}

package daemon

import (
	"context"
	"encoding/json"
	"os"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
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
	methodBuild: streaming((*api.Local).Build),
	methodPlan:  streaming((*api.Local).Plan),
	methodLearn: serve(func(ctx context.Context, l *api.Local, r api.LearnRequest, out api.Output) (any, error) {
		return nil, l.Learn(ctx, r, out)
	}),
	methodVerify: streaming((*api.Local).Verify),
	methodStatus: serve(func(ctx context.Context, l *api.Local, _ struct{}, _ api.Output) (any, error) {
		return l.Status(ctx)
	}),
	methodResults:       query((*api.Local).Results),
	methodList:          query((*api.Local).List),
	methodLog:           query((*api.Local).Log),
	methodGC:            streaming((*api.Local).GC),
	methodImport:        streaming((*api.Local).Import),
	methodPull:          streaming((*api.Local).Pull),
	methodPush:          streaming((*api.Local).Push),
	methodLayerFiles:    query((*api.Local).LayerFiles),
	methodReadLayerFile: query((*api.Local).ReadLayerFile),
	methodLayerDiff:     query((*api.Local).LayerDiff),
	// The shell runs on the terminal the client passed (the slave side of
	// its pty), which becomes its controlling terminal.
	methodShell: serveWithFile(func(ctx context.Context, l *api.Local, r api.ShellRequest, tty *os.File, out api.Output) (any, error) {
		return l.ShellOn(ctx, r, api.Terminal{In: tty, Out: tty, Notice: out.Log})
	}),
	// The export's layout goes, as a tar, into the pipe the client passed;
	// the client adds it to its own layout.
	methodExport: serveWithFile(func(ctx context.Context, l *api.Local, r api.ExportRequest, pipe *os.File, out api.Output) (any, error) {
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

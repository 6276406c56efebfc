package daemon

import (
	"context"
	"encoding/json"
	"fmt"

	"go.lsp.dev/jsonrpc2"

	"github.com/nixlayer/nixlayer/api"
)

// method answers one kind of request for a session.
type method func(ctx context.Context, ss *session, c call, out api.Output) (any, error)

// methods is the daemon's table: one entry per api.Service request.
var methods = map[string]method{
	methodBuild: serve(func(ctx context.Context, l *api.Local, r api.BuildRequest, out api.Output) (any, error) {
		return l.Build(ctx, r, out)
	}),
	methodPlan: serve(func(ctx context.Context, l *api.Local, r api.PlanRequest, out api.Output) (any, error) {
		return l.Plan(ctx, r, out)
	}),
	methodLearn: serve(func(ctx context.Context, l *api.Local, r api.LearnRequest, out api.Output) (any, error) {
		return nil, l.Learn(ctx, r, out)
	}),
	methodVerify: serve(func(ctx context.Context, l *api.Local, r api.VerifyRequest, out api.Output) (any, error) {
		return l.Verify(ctx, r, out)
	}),
	methodStatus: serve(func(ctx context.Context, l *api.Local, _ struct{}, _ api.Output) (any, error) {
		return l.Status(ctx)
	}),
	methodList: serve(func(ctx context.Context, l *api.Local, r api.ListRequest, _ api.Output) (any, error) {
		return l.List(ctx, r)
	}),
	methodLog: serve(func(ctx context.Context, l *api.Local, r api.LogRequest, _ api.Output) (any, error) {
		return l.Log(ctx, r)
	}),
	methodGC: serve(func(ctx context.Context, l *api.Local, r api.GCRequest, out api.Output) (any, error) {
		return l.GC(ctx, r, out)
	}),
	methodImport: serve(func(ctx context.Context, l *api.Local, r api.ImportRequest, out api.Output) (any, error) {
		return l.Import(ctx, r, out)
	}),
	methodShell: shell,
	methodLayerFiles: serve(func(ctx context.Context, l *api.Local, r api.LayerFilesRequest, _ api.Output) (any, error) {
		return l.LayerFiles(ctx, r)
	}),
	methodReadLayerFile: serve(func(ctx context.Context, l *api.Local, r api.ReadLayerFileRequest, _ api.Output) (any, error) {
		return l.ReadLayerFile(ctx, r)
	}),
	methodLayerDiff: serve(func(ctx context.Context, l *api.Local, r api.LayerDiffRequest, _ api.Output) (any, error) {
		return l.LayerDiff(ctx, r)
	}),
}

// serve decodes a request of type R and calls f with the session's engine.
func serve[R any](f func(context.Context, *api.Local, R, api.Output) (any, error)) method {
	return func(ctx context.Context, ss *session, c call, out api.Output) (any, error) {
		var r R
		if len(c.Request) > 0 {
			if err := json.Unmarshal(c.Request, &r); err != nil {
				return nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%T: %v", r, err)
			}
		}
		return f(ctx, ss.svc, r, out)
	}
}

// shell runs on the terminal the client passed with the request (the
// slave side of its pty), which becomes the shell's controlling terminal.
func shell(ctx context.Context, ss *session, c call, out api.Output) (any, error) {
	var r api.ShellRequest
	if err := json.Unmarshal(c.Request, &r); err != nil {
		return nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "shell: %v", err)
	}
	tty, err := ss.fc.takeFile()
	if err != nil {
		return nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "shell: %v", err)
	}
	defer tty.Close()
	res, err := ss.svc.ShellOn(ctx, r, api.Terminal{In: tty, Out: tty, Notice: out.Log})
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	return res, nil
}

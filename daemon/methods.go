package daemon

import (
	"context"
	"encoding/json"
	"os"

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
	methodResults: serve(func(ctx context.Context, l *api.Local, r api.ResultsRequest, _ api.Output) (any, error) {
		return l.Results(ctx, r)
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
	methodPull: serve(func(ctx context.Context, l *api.Local, r api.PullRequest, out api.Output) (any, error) {
		return l.Pull(ctx, r, out)
	}),
	methodPush: serve(func(ctx context.Context, l *api.Local, r api.PushRequest, out api.Output) (any, error) {
		return l.Push(ctx, r, out)
	}),
	methodLayerFiles: serve(func(ctx context.Context, l *api.Local, r api.LayerFilesRequest, _ api.Output) (any, error) {
		return l.LayerFiles(ctx, r)
	}),
	methodReadLayerFile: serve(func(ctx context.Context, l *api.Local, r api.ReadLayerFileRequest, _ api.Output) (any, error) {
		return l.ReadLayerFile(ctx, r)
	}),
	methodLayerDiff: serve(func(ctx context.Context, l *api.Local, r api.LayerDiffRequest, _ api.Output) (any, error) {
		return l.LayerDiff(ctx, r)
	}),
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

// serveWithFile is serve for a request that comes with a file (SCM_RIGHTS)
// the daemon uses for its output: a shell's terminal, an export's pipe.
func serveWithFile[R any](f func(context.Context, *api.Local, R, *os.File, api.Output) (any, error)) method {
	return func(ctx context.Context, ss *session, c call, out api.Output) (any, error) {
		var r R
		if err := json.Unmarshal(c.Request, &r); err != nil {
			return nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%T: %v", r, err)
		}
		file, err := ss.fc.takeFile()
		if err != nil {
			return nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%T: %v", r, err)
		}
		defer file.Close()
		return f(ctx, ss.svc, r, file, out)
	}
}

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"go.lsp.dev/jsonrpc2"
	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/runner"
)

// Options configure a daemon.
type Options struct {
	// CacheDir is the shared layer cache (default: root's, the hook's).
	CacheDir string
	// ResultsDir holds one private directory per user for results that
	// stay outside the store (default: <CacheDir>-results).
	ResultsDir string
	// Socket is shown in Status.
	Socket string
	Logger *zap.Logger
}

// Server serves api.Service to the users Nix allows, with one engine.
type Server struct {
	opts   Options
	engine *runner.Engine
	log    *zap.Logger
	wg     sync.WaitGroup
}

// New opens the shared cache.
func New(opts Options) (*Server, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("nixlayer daemon runs as root: it owns the shared cache and registers exact results in the Nix store")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.CacheDir == "" {
		opts.CacheDir = runner.DefaultCacheDir()
	}
	if opts.ResultsDir == "" {
		opts.ResultsDir = filepath.Clean(opts.CacheDir) + "-results"
	}
	// Traversable by all, listable by none; so is each user's directory in it.
	if err := resultsRoot(opts.ResultsDir); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	e, err := runner.Open(runner.Options{CacheDir: opts.CacheDir, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	return &Server{opts: opts, engine: e, log: opts.Logger}, nil
}

// Serve answers connections on ln until ctx ends, then waits for the
// requests in flight (cancelled) to end.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); ln.Close() }()
	s.log.Info("serving", zap.String("socket", ln.Addr().String()), zap.String("cache", s.opts.CacheDir))
	for {
		c, err := ln.Accept()
		if err != nil {
			s.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting connections: %w", err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, uc)
		}()
	}
}

// Close releases the cache.
func (s *Server) Close() { s.engine.Close() }

// session is one client connection.
type session struct {
	s      *Server
	peer   peer
	access access
	users  nixUsers
	svc    *api.Local
	fc     *fdConn
	conn   jsonrpc2.Conn
	log    *zap.Logger

	mu       sync.Mutex
	inflight map[string]context.CancelFunc
}

func (s *Server) serveConn(ctx context.Context, uc *net.UnixConn) {
	p, err := peerCredentials(uc)
	if err != nil {
		s.log.Warn("refusing a connection", zap.Error(err))
		uc.Close()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	users, err := readNixUsers(ctx)
	if err != nil {
		// Without Nix's word nobody but root gets in.
		s.log.Warn("reading allowed-users and trusted-users", zap.Error(err))
		users = nixUsers{Trusted: []string{"root"}}
	}
	fc := newFDConn(uc)
	sess := &session{s: s, peer: p, access: users.accessOf(p), users: users, fc: fc, inflight: map[string]context.CancelFunc{},
		log: s.log.With(zap.String("user", users.accessOf(p).User), zap.Int("pid", p.PID))}
	sess.conn = jsonrpc2.NewConn(jsonrpc2.NewStream(fc))
	if sess.access.Allowed {
		if sess.svc, err = s.localFor(p, sess.access); err != nil {
			sess.log.Warn("preparing the user's results directory", zap.Error(err))
		}
	}
	sess.log.Debug("connected", zap.Bool("allowed", sess.access.Allowed), zap.Bool("trusted", sess.access.Trusted))
	sess.conn.Go(ctx, sess.handle)
	select {
	case <-sess.conn.Done():
	case <-ctx.Done():
		sess.conn.Close()
	}
	// The client is gone: what it asked for stops.
	sess.mu.Lock()
	for _, c := range sess.inflight {
		c()
	}
	sess.mu.Unlock()
}

// localFor is the engine as one user sees it: results outside the store go
// to the user's private directory; what needs trust (api.Local) is refused
// to the untrusted.
func (s *Server) localFor(p peer, a access) (*api.Local, error) {
	dir := filepath.Join(s.opts.ResultsDir, strconv.Itoa(p.UID))
	if err := rootOwnedDir(dir); err != nil {
		return nil, err
	}
	return api.NewLocal(s.engine, api.LocalOptions{
		ResultsDir: dir, Owner: &runner.Owner{UID: p.UID, GID: p.GID},
		User: a.User, UID: p.UID, Untrusted: !a.Trusted,
		Engine: "daemon", Socket: s.opts.Socket,
	}), nil
}

func (ss *session) handle(ctx context.Context, reply jsonrpc2.Replier, req jsonrpc2.Request) error {
	if _, isCall := req.(*jsonrpc2.Call); !isCall {
		if req.Method() == notifyCancel {
			var c cancel
			if json.Unmarshal(req.Params(), &c) == nil {
				ss.mu.Lock()
				if f := ss.inflight[c.Token]; f != nil {
					f()
				}
				ss.mu.Unlock()
			}
		}
		return nil
	}
	if !ss.access.Allowed {
		ss.log.Info("refused", zap.String("method", req.Method()))
		return reply(ctx, nil, jsonrpc2.NewError(codeNotAllowed, ss.users.refusal(ss.access)))
	}
	m, ok := methods[req.Method()]
	if !ok {
		return reply(ctx, nil, jsonrpc2.Errorf(jsonrpc2.MethodNotFound, "nixlayer daemon has no method %q (is the client newer than the daemon?)", req.Method()))
	}
	var c call
	if err := json.Unmarshal(req.Params(), &c); err != nil {
		return reply(ctx, nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%s: %v", req.Method(), err))
	}
	if ss.svc == nil {
		return reply(ctx, nil, jsonrpc2.Errorf(jsonrpc2.InternalError, "the daemon could not prepare a results directory for %s (see its log)", ss.access.User))
	}
	rctx, cancel := context.WithCancel(ctx)
	ss.mu.Lock()
	ss.inflight[c.Token] = cancel
	ss.mu.Unlock()
	// Requests run beside the read loop, which must go on reading (output
	// is sent while they run, cancellations come in).
	go func() {
		defer func() {
			ss.mu.Lock()
			delete(ss.inflight, c.Token)
			ss.mu.Unlock()
			cancel()
		}()
		ss.log.Debug("request", zap.String("method", req.Method()))
		res, err := m(rctx, ss, c, ss.output(c.Token))
		if err != nil {
			if rctx.Err() != nil && ctx.Err() == nil {
				err = jsonrpc2.NewError(codeCancelled, "cancelled")
			}
			ss.log.Debug("request failed", zap.String("method", req.Method()), zap.Error(err))
			err = wireError(err)
		}
		if rerr := reply(context.Background(), stdJSON(res), err); rerr != nil {
			ss.log.Debug("reply failed", zap.Error(rerr))
		}
	}()
	return nil
}

// output sends a request's log and events to the client.
func (ss *session) output(token string) api.Output {
	return api.Output{
		Log: writerFunc(func(p []byte) (int, error) {
			ss.conn.Notify(context.Background(), notifyOutput, stdJSON(output{Token: token, Log: string(p)}))
			return len(p), nil
		}),
		Progress: func(ev runner.Event) {
			ss.conn.Notify(context.Background(), notifyOutput, stdJSON(output{Token: token, Event: &ev}))
		},
	}
}

// stdJSON encodes v with encoding/json, as the client decodes it (the
// library's own encoder writes some types, such as durations, differently).
func stdJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return data
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

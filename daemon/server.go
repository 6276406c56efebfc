// Package daemon is `nixlayer daemon`: a root service that owns the shared
// layer cache (the one the Nix hook uses) and serves api.Service to the
// other users of the machine over a Unix socket, the model being
// nix-daemon. Who may connect follows Nix's own allowed-users and
// trusted-users, checked against the peer's credentials. Client is the
// other end: the CLI and the language server of a user use it for every
// request. Both ends speak the protocol of daemon/protocol: JSON-RPC,
// one method per api.Service request, a shell's terminal and an export's
// pipe passed as file descriptors.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/api"
	"github.com/nixlayer/nixlayer/daemon/protocol"
	"github.com/nixlayer/nixlayer/events"
	"github.com/nixlayer/nixlayer/results"
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

	// users are Nix's allowed-users and trusted-users, read when the
	// daemon starts and again on SIGHUP (Reload), never per connection.
	users atomic.Pointer[nixUsers]

	conns    perUser // open connections
	requests perUser // requests running
}

// A user's open connections (a CLI uses one per command, two for a shell
// or an export; a language server one) and requests running at once (an
// editor reads a layer's tree in bursts) are bounded.
const (
	maxConnsPerUser    = 64
	maxRequestsPerUser = 256
)

// perUser counts what each uid holds against a limit.
type perUser struct {
	mu    sync.Mutex
	held  map[int]int
	limit int
}

// take counts one more for uid; false when uid holds its limit.
func (p *perUser) take(uid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = map[int]int{}
	}
	if p.held[uid] >= p.limit {
		return false
	}
	p.held[uid]++
	return true
}

func (p *perUser) give(uid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[uid]--; p.held[uid] <= 0 {
		delete(p.held, uid)
	}
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
	s := &Server{opts: opts, engine: e, log: opts.Logger, conns: perUser{limit: maxConnsPerUser}, requests: perUser{limit: maxRequestsPerUser}}
	s.Reload(context.Background())
	return s, nil
}

// Reload reads Nix's allowed-users and trusted-users again (SIGHUP, as
// after editing nix.conf). Without Nix's word nobody but root gets in.
func (s *Server) Reload(ctx context.Context) {
	users, err := readNixUsers(ctx)
	if err != nil {
		s.log.Warn("reading allowed-users and trusted-users: only root is let in", zap.Error(err))
		users = nixUsers{Trusted: []string{"root"}}
	}
	s.users.Store(&users)
	s.log.Info("users", zap.Strings("allowed-users", users.Allowed), zap.Strings("trusted-users", users.Trusted))
}

// Serve answers connections on ln until ctx ends, then waits for the
// requests in flight (cancelled) to end. SIGHUP rereads Nix's user
// settings. Failures to accept (out of descriptors) are retried after a
// pause that grows to a second.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); ln.Close() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				s.Reload(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	s.log.Info("serving", zap.String("socket", ln.Addr().String()), zap.String("cache", s.opts.CacheDir))
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("accepting connections: %w", err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting a connection failed; retrying", zap.Error(err), zap.Duration("after", pause))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			continue
		}
		pause = 0
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
	fc     *protocol.FDConn
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
	if !s.conns.take(p.UID) {
		s.log.Warn("refusing a connection: too many from this user", zap.Int("uid", p.UID), zap.Int("pid", p.PID), zap.Int("limit", maxConnsPerUser))
		refuseConn(uc, fmt.Errorf("uid %d has %d connections to the nixlayer daemon open, its limit", p.UID, maxConnsPerUser))
		return
	}
	defer s.conns.give(p.UID)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	users := *s.users.Load()
	a := users.accessOf(p)
	fc := protocol.NewFDConn(uc)
	if a.Allowed {
		// Only now may a descriptor that comes be held (one at a time).
		fc.AllowFiles()
	}
	sess := &session{s: s, peer: p, access: a, users: users, fc: fc, inflight: map[string]context.CancelFunc{},
		log: s.log.With(zap.String("user", a.User), zap.Int("pid", p.PID))}
	sess.conn = jsonrpc2.NewConn(protocol.NewBoundedStream(fc, protocol.MaxRequest, true))
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
	if err := sess.conn.Err(); err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		sess.log.Info("connection ended", zap.Error(err))
	}
	if n := fc.DroppedFiles(); n > 0 {
		sess.log.Info("descriptors refused", zap.Int("closed", n))
	}
	// The client is gone: what it asked for stops.
	sess.mu.Lock()
	for _, c := range sess.inflight {
		c()
	}
	sess.mu.Unlock()
}

// refuseConn answers a connection the daemon will not serve with one
// JSON-RPC error (null id) and closes it, without waiting for a request.
func refuseConn(uc *net.UnixConn, err error) {
	uc.SetWriteDeadline(time.Now().Add(time.Second))
	uc.Write(protocol.RefusalFrame(err))
	uc.Close()
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
		ResultsDir: dir, Owner: &results.Owner{UID: p.UID, GID: p.GID},
		User: a.User, UID: p.UID, Untrusted: !a.Trusted,
		Engine: "daemon", Socket: s.opts.Socket,
	}), nil
}

func (ss *session) handle(ctx context.Context, reply jsonrpc2.Replier, req jsonrpc2.Request) error {
	if _, isCall := req.(*jsonrpc2.Call); !isCall {
		ss.fc.DropFile()
		if req.Method() == protocol.NotifyCancel {
			var c protocol.Cancel
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
		ss.fc.DropFile() // none is held for a user Nix does not allow
		ss.log.Info("refused", zap.String("method", req.Method()))
		return reply(ctx, nil, jsonrpc2.NewError(protocol.CodeNotAllowed, ss.users.refusal(ss.access)))
	}
	m, ok := methods[req.Method()]
	if !m.withFile {
		// A descriptor passed with any other request is closed at once.
		ss.fc.DropFile()
	}
	if !ok {
		return reply(ctx, nil, jsonrpc2.Errorf(jsonrpc2.MethodNotFound, "nixlayer daemon has no method %q (is the client newer than the daemon?)", req.Method()))
	}
	var c protocol.Call
	if err := json.Unmarshal(req.Params(), &c); err != nil {
		if m.withFile {
			ss.fc.DropFile()
		}
		return reply(ctx, nil, jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%s: %v", req.Method(), err))
	}
	r, err := m.decode(c.Request)
	var file *os.File
	if m.withFile {
		// Taken here, in the read loop, so that it is this request's.
		if f, ferr := ss.fc.TakeFile(); ferr != nil && err == nil {
			err = jsonrpc2.Errorf(jsonrpc2.InvalidParams, "%s: %v", req.Method(), ferr)
		} else {
			file = f
		}
	}
	if err == nil && ss.svc == nil {
		err = jsonrpc2.Errorf(jsonrpc2.InternalError, "the daemon could not prepare a results directory for %s (see its log)", ss.access.User)
	}
	if err == nil && !ss.s.requests.take(ss.peer.UID) {
		err = jsonrpc2.Errorf(protocol.CodeTooMany, "%s has %d requests running in the nixlayer daemon, its limit", ss.access.User, maxRequestsPerUser)
	}
	if err != nil {
		if file != nil {
			file.Close()
		}
		return reply(ctx, nil, err)
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
			ss.s.requests.give(ss.peer.UID)
		}()
		if file != nil {
			defer file.Close()
		}
		ss.log.Debug("request", zap.String("method", req.Method()))
		res, err := m.run(rctx, ss, r, file, ss.output(c.Token))
		if err != nil {
			if rctx.Err() != nil && ctx.Err() == nil {
				err = jsonrpc2.NewError(protocol.CodeCancelled, "cancelled")
			}
			ss.log.Debug("request failed", zap.String("method", req.Method()), zap.Error(err))
			err = protocol.WireError(err)
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
			ss.conn.Notify(context.Background(), protocol.NotifyOutput, stdJSON(protocol.Output{Token: token, Log: string(p)}))
			return len(p), nil
		}),
		Progress: func(ev events.Event) {
			ss.conn.Notify(context.Background(), protocol.NotifyOutput, stdJSON(protocol.Output{Token: token, Event: &ev}))
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

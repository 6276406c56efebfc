package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/nixlayer/nixlayer/internal/e2etest"
)

// The scripts' commands for layer caches through a real registry;
// scriptCmds names them.

// scriptRegistry is the registry a script started, and its cutting proxy.
type scriptRegistry struct {
	reg   *e2etest.Registry
	proxy *cutProxy
}

func registryOf(ts *testscript.TestScript) *scriptRegistry {
	r := ts.Value(scriptRegistry{}).(*scriptRegistry)
	if r.reg == nil && r.proxy == nil {
		ts.Fatalf("no registry: run `registry start` first")
	}
	return r
}

// registry start [-auth]: starts a real OCI registry (docker-registry) on a
// free port as $REGISTRY, stopped at the script's end; with -auth it wants
// basic auth, whose credentials go into $DOCKER_CONFIG.
//
// registry retag REPO FROM TO: serves the manifest tagged FROM as TO too
// (what a compromised or confused registry could do).
//
// registry tamper REPO TAG N: changes a byte in the middle of the blob of
// layer N of the manifest tagged TAG, in the registry's storage.
//
// registry proxy VAR: VAR is the address of a proxy to the registry that,
// in the first layer blob a pull fetches (after the config), sends half,
// stops the registry and drops the connection. `registry cut` checks that
// it did.
func cmdRegistry(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: registry start|retag|tamper|proxy|cut ...")
	}
	sr := ts.Value(scriptRegistry{}).(*scriptRegistry)
	switch {
	case args[0] == "start" && len(args) <= 2:
		auth := len(args) == 2 && args[1] == "-auth"
		reg, err := e2etest.LaunchRegistry(ts.MkAbs("registry"), auth)
		ts.Check(err)
		ts.Defer(reg.Stop)
		sr.reg = reg
		ts.Setenv("REGISTRY", reg.Addr)
		if auth {
			dir := ts.MkAbs("docker")
			ts.Check(os.MkdirAll(dir, 0o700))
			ts.Check(reg.Login(dir))
			ts.Setenv("DOCKER_CONFIG", dir)
		}
	case args[0] == "retag" && len(args) == 4:
		repo := remoteRepo(ts, args[1])
		desc, err := repo.Resolve(context.Background(), args[2])
		ts.Check(err)
		ts.Check(repo.Tag(context.Background(), desc, args[3]))
	case args[0] == "tamper" && len(args) == 4:
		_, rc, err := remoteRepo(ts, args[1]).FetchReference(context.Background(), args[2])
		ts.Check(err)
		var m struct{ Layers []struct{ Digest string } }
		err = json.NewDecoder(rc).Decode(&m)
		rc.Close()
		ts.Check(err)
		n, err := strconv.Atoi(args[3])
		ts.Check(err)
		blob := registryOf(ts).reg.Blob(m.Layers[n].Digest)
		data, err := os.ReadFile(blob)
		ts.Check(err)
		data[len(data)/2] ^= 0xff
		ts.Check(os.WriteFile(blob, data, 0o644))
	case args[0] == "proxy" && len(args) == 2:
		reg := registryOf(ts).reg
		sr.proxy = &cutProxy{target: reg.Addr, stop: reg.Stop, after: 4096}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		srv := &http.Server{Handler: http.HandlerFunc(sr.proxy.serve)}
		go srv.Serve(l)
		ts.Defer(func() { srv.Close() })
		ts.Setenv(args[1], l.Addr().String())
	case args[0] == "cut" && len(args) == 1:
		if p := registryOf(ts).proxy; p == nil || !p.cut() {
			ts.Fatalf("the proxy never cut a blob")
		}
	default:
		ts.Fatalf("usage: registry start [-auth] | retag REPO FROM TO | tamper REPO TAG N | proxy VAR | cut")
	}
}

func remoteRepo(ts *testscript.TestScript, name string) *remote.Repository {
	r, err := remote.NewRepository(registryOf(ts).reg.Repo(name))
	ts.Check(err)
	r.PlainHTTP = true
	return r
}

// key VAR NAME [DIR]: makes a binary-cache key pair with Nix's own tool,
// NAME.sk and NAME.pk in DIR (default: keys); VAR is the public key.
func cmdKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: key VAR NAME [DIR]")
	}
	dir := ts.MkAbs("keys")
	if len(args) == 3 {
		dir = ts.MkAbs(args[2])
	}
	ts.Check(os.MkdirAll(dir, 0o700))
	sk, pk := filepath.Join(dir, args[1]+".sk"), filepath.Join(dir, args[1]+".pk")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", args[1], sk, pk).CombinedOutput(); err != nil {
		ts.Fatalf("nix-store --generate-binary-cache-key: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(pk)
	ts.Check(err)
	ts.Setenv(args[0], strings.TrimSpace(string(pub)))
}

// hang-server VAR: VAR is the address of a server that accepts
// connections and never answers.
func cmdHangServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: hang-server VAR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	var mu sync.Mutex
	var conns []net.Conn
	ts.Defer(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	ts.Setenv(args[0], l.Addr().String())
}

// free-addr VAR: VAR is a free address on 127.0.0.1 where nothing listens.
func cmdFreeAddr(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: free-addr VAR")
	}
	addr, err := e2etest.FreeAddr()
	ts.Check(err)
	ts.Setenv(args[0], addr)
}

// cutProxy forwards to a registry and, in the first layer blob (the
// config is the first blob a pull fetches) longer than after bytes, sends
// half, stops the registry and drops the connection.
type cutProxy struct {
	target string
	stop   func()
	after  int64
	mu     sync.Mutex
	blobs  int
	done   bool
}

func (p *cutProxy) cut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

func (p *cutProxy) serve(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.target+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	p.mu.Lock()
	isBlob := r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
	if isBlob {
		p.blobs++
	}
	cutting := !p.done && isBlob && p.blobs > 1 && resp.ContentLength > p.after
	if cutting {
		p.done = true
	}
	p.mu.Unlock()
	if !cutting {
		io.Copy(w, resp.Body)
		return
	}
	io.CopyN(w, resp.Body, resp.ContentLength/2)
	w.(http.Flusher).Flush()
	p.stop()
	panic(http.ErrAbortHandler) // drop the connection mid-body
}

package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/runner"
)

// Layer caches through a real registry (Debian's docker-registry, CNCF
// distribution 2.8): two caches on this machine stand for CI and a laptop.

func smallHello(salt string) fixture {
	return fixture{attr: "hello", args: []string{"--arg", "nfiles", "20", "--arg", "funcsPerFile", "4", "--argstr", "salt", salt}}
}

// binaryCacheKey makes a key pair with Nix's own tool; it returns the
// secret key file and the public key.
func binaryCacheKey(t *testing.T, name string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	sk, pk := filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", name, sk, pk).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --generate-binary-cache-key: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, strings.TrimSpace(string(pub))
}

func writeConfig(t *testing.T, cache string, cfg runner.Config) {
	t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// buildJSON builds with --json and returns the result and the progress.
func (e *env) buildJSON(f fixture) (*runner.Result, string) {
	e.t.Helper()
	r := e.nixlayer(append([]string{"build", "-Q", "--no-out-link", "--json"}, f.cli()...)...)
	if r.Err != nil {
		e.t.Fatalf("nixlayer build %v: %v\n%s", f.cli(), r.Err, r.Stderr)
	}
	var res runner.Result
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		e.t.Fatalf("build --json: %v\n%s", err, r.Stdout)
	}
	return &res, r.Stderr
}

func linesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

const allPhases = "unpackPhase patchPhase configurePhase buildPhase checkPhase installPhase fixupPhase installCheckPhase distPhase"

// team is a registry and a CI cache that pushes to it, signing with a key
// made by Nix.
type team struct {
	t    *testing.T
	ci   *env
	reg  *e2etest.Registry
	repo string
	pk   string // CI's public key
}

// newTeam starts the registry (with basic auth: the credentials go into a
// docker config that $DOCKER_CONFIG names) and configures CI to push there.
func newTeam(t *testing.T, auth bool) *team {
	tm := &team{t: t, ci: newEnv(t), reg: e2etest.StartRegistry(t, auth)}
	if auth {
		dir := t.TempDir()
		tm.reg.Login(dir)
		t.Setenv("DOCKER_CONFIG", dir)
	}
	sk, pk := binaryCacheKey(t, "ci-"+e2etest.Salt())
	tm.repo, tm.pk = tm.reg.Repo("team/layers"), pk
	writeConfig(t, tm.ci.cache, runner.Config{PushTo: tm.repo, SecretKeyFile: sk, InsecureRegistries: []string{tm.reg.Addr}})
	return tm
}

// laptop is an empty cache that pulls from the registry at addr (the
// registry itself when ""), trusting the key trusted.
func (tm *team) laptop(addr, trusted string) *env {
	e := &env{t: tm.t, dir: tm.ci.dir, cache: tm.t.TempDir()}
	repo := tm.repo
	if addr == "" {
		addr = tm.reg.Addr
	} else {
		repo = addr + "/team/layers"
	}
	writeConfig(tm.t, e.cache, runner.Config{LayerCaches: []string{repo}, TrustedLayerKeys: []string{trusted}, InsecureRegistries: []string{addr}, RegistryTimeout: "3s"})
	return e
}

// Done when 1: CI builds cold and pushes (the path map after learning);
// the laptop, with an empty cache, edits postInstall: it pulls
// unpack…check, resumes from installPhase, and its result is exact,
// registered and equal to nix-build --check. The registry wants basic
// auth, read from the standard docker config. Pushing the same chain again
// sends nothing.
func TestLayerCacheCIToLaptop(t *testing.T) {
	tm := newTeam(t, true)
	ci, repo := tm.ci, tm.repo
	laptop := tm.laptop("", tm.pk)

	f := smallHello(e2etest.Salt())
	_, stderr := ci.mustBuild(f, "--no-out-link")
	if len(linesWith(stderr, "pushed unpackPhase…distPhase to "+repo)) != 1 {
		t.Fatalf("CI's build did not push its chain:\n%s", stderr)
	}
	if r := ci.nixlayer(append([]string{"learn"}, f.cli()...)...); r.Err != nil || !strings.Contains(r.Stderr, "pushed") {
		t.Fatalf("CI's learn did not push the path maps: %v\n%s", r.Err, r.Stderr)
	}

	edited := f.with("--argstr", "postInstallExtra", "echo laptop > $out/laptop")
	res, progress := laptop.buildJSON(edited)
	t.Logf("laptop:\n%s", progress)
	if got := strings.Join(res.Reused, " "); got != "unpackPhase patchPhase configurePhase buildPhase checkPhase" {
		t.Fatalf("the laptop reused %q, want unpack…check from the registry\n%s", got, progress)
	}
	if got := strings.Join(res.Ran, " "); got != "installPhase fixupPhase installCheckPhase distPhase" {
		t.Fatalf("the laptop ran %q", got)
	}
	if len(linesWith(progress, "installPhase       running: postInstall changed (against the chain in "+repo+")")) != 1 {
		t.Fatalf("the laptop does not say which edit made installPhase run:\n%s", progress)
	}
	if len(linesWith(progress, "pulled 5 layers")) != 1 || strings.Contains(progress, "learning") {
		t.Fatalf("the laptop should pull 5 layers with their path map and learn nothing:\n%s", progress)
	}
	if !res.InStore || !res.Verified || res.Rewrite == nil || !res.Rewrite.Exact {
		t.Fatalf("the laptop's resume is not exact and registered: inStore %v verified %v rewrite %+v", res.InStore, res.Verified, res.Rewrite)
	}
	if b, err := os.ReadFile(filepath.Join(res.Outputs["out"], "laptop")); err != nil || string(b) != "laptop\n" {
		t.Fatalf("the edit is not in the output: %q %v", b, err)
	}
	if out, err := exec.Command("nix-store", "--verify-path", res.Outputs["out"]).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --verify-path: %v\n%s", err, out)
	}
	laptop.sameAsNix(edited, res.Outputs["out"])

	// The same chain again: every blob and manifest is there already.
	var rep runner.PushReport
	r := ci.nixlayer(append([]string{"push", "--json", repo}, f.cli()...)...)
	if r.Err != nil || json.Unmarshal([]byte(r.Stdout), &rep) != nil {
		t.Fatalf("second push: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if rep.Uploaded != 0 || rep.BlobsSent != 0 || rep.ManifestsSent != 0 || rep.BlobsSkipped != 9 {
		t.Fatalf("the second push of the same chain sent %d bytes (%d blobs, %d manifests)", rep.Uploaded, rep.BlobsSent, rep.ManifestsSent)
	}
	// Without credentials the registry says no, and push says so.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if r := ci.nixlayer(append([]string{"push", repo}, f.cli()...)...); r.Err == nil || !strings.Contains(r.Stderr, "docker login") {
		t.Fatalf("a push without credentials: %v\n%s", r.Err, r.Stderr)
	}
}

// Done when 2: a tampered blob, a chain signed by an unknown key and a
// layer whose key differs from the one computed here are each refused with
// a one-line reason; the build runs locally and its result is Nix's.
func TestLayerCacheRefusals(t *testing.T) {
	tm := newTeam(t, false)
	ci, reg, pk := tm.ci, tm.reg, tm.pk
	_, otherPK := binaryCacheKey(t, "someone-"+e2etest.Salt())
	f := smallHello(e2etest.Salt())
	ci.mustBuild(f, "--no-out-link")
	edited := f.with("--argstr", "postInstallExtra", "echo laptop > $out/laptop")
	laptop := func(trusted string) *env { return tm.laptop("", trusted) }
	refused := func(e *env, g fixture, reason string) *runner.Result {
		t.Helper()
		res, progress := e.buildJSON(g)
		warnings := linesWith(progress, "layer cache")
		if len(warnings) != 1 || !strings.Contains(warnings[0], "refused: ") || !strings.Contains(warnings[0], reason) {
			t.Fatalf("want one line refusing the chain (%q), got:\n%s", reason, progress)
		}
		t.Logf("%s", warnings[0])
		if got := strings.Join(res.Ran, " "); got != allPhases || !res.InStore {
			t.Fatalf("after the refusal the build ran %q (in store: %v), want every phase locally", got, res.InStore)
		}
		return res
	}

	// Signed by a key this laptop does not trust.
	refused(laptop(otherPK), edited, "signed by ci-")

	// A layer whose recorded key is not the key computed here: the
	// registry serves another package's chain under this build's key.
	g := smallHello(e2etest.Salt())
	lap := laptop(pk)
	plan := lap.plan(g)
	ciPlan := ci.plan(f)
	retag(t, reg, "team/layers", "nl-"+ciPlan.Phases[4].Key, "nl-"+plan.Phases[0].Key)
	refused(lap, g, "the layer for unpackPhase records key "+ciPlan.Phases[0].Key[:12]+", this build computes "+plan.Phases[0].Key[:12])

	// A blob changed in the registry's storage.
	var desc struct{ Layers []struct{ Digest string } }
	manifest(t, reg, "team/layers", "nl-"+ciPlan.Phases[4].Key, &desc)
	blob := reg.Blob(desc.Layers[3].Digest) // buildPhase
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	lap2 := laptop(pk)
	res := refused(lap2, edited, "does not match its digest")
	lap2.sameAsNix(edited, res.Outputs["out"])
}

// retag makes the registry serve the manifest of one tag under another too
// (what a compromised or confused registry could do).
func retag(t *testing.T, reg *e2etest.Registry, repo, from, to string) {
	t.Helper()
	r, err := remote.NewRepository(reg.Repo(repo))
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	ctx := t.Context()
	desc, err := r.Resolve(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Tag(ctx, desc, to); err != nil {
		t.Fatal(err)
	}
}

func manifest(t *testing.T, reg *e2etest.Registry, repo, tag string, v any) {
	t.Helper()
	r, err := remote.NewRepository(reg.Repo(repo))
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	_, rc, err := r.FetchReference(t.Context(), tag)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// Done when 3: the registry dies half-way through a layer download. The
// build completes locally with Nix's result, and nothing half-pulled stays
// in the cache to be reused.
func TestLayerCacheStoppedMidPull(t *testing.T) {
	tm := newTeam(t, false)
	f := smallHello(e2etest.Salt())
	tm.ci.mustBuild(f, "--no-out-link")

	// The laptop reaches the registry through a proxy that stops it in
	// the middle of the first sizeable layer blob.
	proxy := &cutProxy{target: tm.reg.Addr, stop: tm.reg.Stop, after: 4096}
	laptop := tm.laptop(proxy.start(t), tm.pk)
	edited := f.with("--argstr", "postInstallExtra", "echo laptop > $out/laptop")
	res, progress := laptop.buildJSON(edited)
	if !proxy.cut() {
		t.Fatalf("the proxy never cut a blob:\n%s", progress)
	}
	warnings := linesWith(progress, "layer cache")
	if len(warnings) != 1 || !strings.Contains(warnings[0], "unexpected EOF") {
		t.Fatalf("want one warning line about the broken download, got:\n%s", progress)
	}
	t.Logf("%s", warnings[0])
	if got := strings.Join(res.Ran, " "); got != allPhases || !res.InStore {
		t.Fatalf("the build ran %q (in store %v), want every phase locally", got, res.InStore)
	}
	var rows []runner.LayerRow
	r := laptop.nixlayer("ls", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 9 {
		t.Fatalf("the cache holds %d layers, want the 9 built locally:\n%s", len(rows), r.Stdout)
	}
	if left, _ := filepath.Glob(filepath.Join(laptop.cache, "pull-*")); len(left) > 0 {
		t.Fatalf("downloads left behind: %v", left)
	}
	laptop.sameAsNix(edited, res.Outputs["out"])
}

// A registry that is down or hangs costs one warning line and the
// configured timeout; the build goes on locally.
func TestLayerCacheDownOrHanging(t *testing.T) {
	e := newEnv(t)
	down := freeAddr(t)
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() { // accepts and never answers
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, pk := binaryCacheKey(t, "ci-"+e2etest.Salt())
	hangAddr := hang.Addr().String()
	writeConfig(t, e.cache, runner.Config{LayerCaches: []string{down + "/layers", hangAddr + "/layers"}, TrustedLayerKeys: []string{pk},
		InsecureRegistries: []string{down, hangAddr}, RegistryTimeout: "2s"})
	f := fixture{attr: "custom", args: []string{"--argstr", "salt", e2etest.Salt()}}
	t0 := time.Now()
	res, progress := e.buildJSON(f)
	t.Logf("build with one cache down and one hanging: %s\n%s", time.Since(t0).Round(time.Millisecond), progress)
	warnings := linesWith(progress, "layer cache")
	if len(warnings) != 2 || !strings.Contains(warnings[0], down) || !strings.Contains(warnings[1], hangAddr) {
		t.Fatalf("want one warning line per cache, got:\n%s", progress)
	}
	if !res.InStore {
		t.Fatal("the build's result is not in the store")
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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

func (p *cutProxy) start(t *testing.T) string {
	srv := &http.Server{Handler: http.HandlerFunc(p.serve)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
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

// kill -9 while pulled layers are applied: the layer being applied stays
// marked running and is removed by the next run, which pulls what is
// missing and resumes with an exact, registered result.
func TestLayerCacheKilledMidApply(t *testing.T) {
	tm := newTeam(t, false)
	f := smallHello(e2etest.Salt())
	tm.ci.mustBuild(f, "--no-out-link")
	if r := tm.ci.nixlayer(append([]string{"learn"}, f.cli()...)...); r.Err != nil {
		t.Fatalf("learn: %v\n%s", r.Err, r.Stderr)
	}
	laptop := tm.laptop("", tm.pk)
	edited := f.with("--argstr", "postInstallExtra", "echo laptop > $out/laptop")

	for _, point := range fault.PullPoints {
		cmd := exec.Command(nixlayerBin, append([]string{"build", "-Q", "--no-out-link", "--cache", laptop.cache}, edited.cli()...)...)
		cmd.Env = append(os.Environ(), "NIXLAYER_FAULT="+point)
		out, err := cmd.CombinedOutput()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); err == nil || !ok || !ws.Signaled() {
			t.Fatalf("fault %s was not hit (%v):\n%s", point, err, out)
		}
	}
	res, progress := laptop.buildJSON(edited)
	if got := strings.Join(res.Reused, " "); got != "unpackPhase patchPhase configurePhase buildPhase checkPhase" || !res.InStore {
		t.Fatalf("after the kill the laptop reused %q (in store %v):\n%s", got, res.InStore, progress)
	}
	var rows []runner.LayerRow
	r := laptop.nixlayer("ls", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Status == "running" {
			t.Fatalf("a half-applied layer survived: %+v", row)
		}
	}
	laptop.sameAsNix(edited, res.Outputs["out"])
}

package e2etest

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Registry is a real OCI registry (Debian's docker-registry, CNCF
// distribution 2.8) on 127.0.0.1 and a free port, storing into a test
// directory.
type Registry struct {
	Addr    string // 127.0.0.1:PORT
	Root    string // its storage directory
	User    string // basic-auth user ("" without auth)
	Pass    string
	t       testing.TB
	cmd     *exec.Cmd
	config  string
	logPath string
}

// StartRegistry starts a registry for the test (stopped at its end); with
// auth it requires basic auth (htpasswd, bcrypt) as User/Pass.
func StartRegistry(t testing.TB, auth bool) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry is not installed (scripts/install-deps.sh installs it)")
	}
	dir := t.TempDir()
	r := &Registry{Root: filepath.Join(dir, "storage"), t: t, config: filepath.Join(dir, "config.yml"), logPath: filepath.Join(dir, "registry.log")}
	authCfg := ""
	if auth {
		r.User, r.Pass = "ci", "s3cret-"+Salt()
		out, err := exec.Command("htpasswd", "-Bbn", r.User, r.Pass).Output()
		if err != nil {
			t.Fatalf("htpasswd (apache2-utils): %v", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, out, 0o600); err != nil {
			t.Fatal(err)
		}
		authCfg = fmt.Sprintf("auth:\n  htpasswd:\n    realm: nixlayer-test\n    path: %s\n", htpasswd)
	}
	r.Addr = freeAddr(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, r.Root, r.Addr, authCfg)
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "serve", r.config)
	r.start()
	t.Cleanup(r.Stop)
	return r
}

func (r *Registry) start() {
	r.t.Helper()
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(r.cmd.Path, r.cmd.Args[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting docker-registry: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(r.logPath)
	r.t.Fatalf("docker-registry did not come up on %s:\n%s", r.Addr, log)
}

// Stop kills the registry (as a crash would); its storage stays.
func (r *Registry) Stop() {
	if r.cmd != nil && r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// Restart starts the stopped registry again on the same address.
func (r *Registry) Restart() { r.start() }

// Repo is a repository reference on this registry.
func (r *Registry) Repo(name string) string { return r.Addr + "/" + name }

// Login writes a docker config.json with the registry's credentials into
// dir (point $DOCKER_CONFIG at it).
func (r *Registry) Login(dir string) {
	r.t.Helper()
	enc := base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Pass))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Addr, enc)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// Blob is the path of a blob in the registry's storage (to tamper with it).
func (r *Registry) Blob(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// freeAddr picks a free port on 127.0.0.1.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

package e2etest

import (
	"encoding/base64"
	"errors"
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
	bin     string
	cmd     *exec.Cmd
	config  string
	logPath string
}

// StartRegistry starts a registry for the test (stopped at its end); with
// auth it requires basic auth (htpasswd, bcrypt) as User/Pass.
func StartRegistry(t testing.TB, auth bool) *Registry {
	t.Helper()
	r, err := LaunchRegistry(t.TempDir(), auth)
	if errors.Is(err, errNoRegistry) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

var errNoRegistry = errors.New("docker-registry is not installed (scripts/install-deps.sh installs it)")

// LaunchRegistry starts a registry storing into dir; the caller stops it.
func LaunchRegistry(dir string, auth bool) (*Registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, errNoRegistry
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &Registry{Root: filepath.Join(dir, "storage"), bin: bin, config: filepath.Join(dir, "config.yml"), logPath: filepath.Join(dir, "registry.log")}
	authCfg := ""
	if auth {
		r.User, r.Pass = "ci", "s3cret-"+Salt()
		out, err := exec.Command("htpasswd", "-Bbn", r.User, r.Pass).Output()
		if err != nil {
			return nil, fmt.Errorf("htpasswd (apache2-utils): %w", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, out, 0o600); err != nil {
			return nil, err
		}
		authCfg = fmt.Sprintf("auth:\n  htpasswd:\n    realm: nixlayer-test\n    path: %s\n", htpasswd)
	}
	if r.Addr, err = FreeAddr(); err != nil {
		return nil, err
	}
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
		return nil, err
	}
	return r, r.Restart()
}

// Restart starts the (stopped) registry on its address.
func (r *Registry) Restart() error {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	r.cmd = exec.Command(r.bin, "serve", r.config)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// Killed with the thread that started it, should a test die without
	// stopping it; so no test may let a thread exit (see DialAs).
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("starting docker-registry: %w", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(r.logPath)
	return fmt.Errorf("docker-registry did not come up on %s:\n%s", r.Addr, log)
}

// Stop kills the registry (as a crash would); its storage stays.
func (r *Registry) Stop() {
	if r.cmd != nil && r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// Repo is a repository reference on this registry.
func (r *Registry) Repo(name string) string { return r.Addr + "/" + name }

// Login writes a docker config.json with the registry's credentials into
// dir (point $DOCKER_CONFIG at it).
func (r *Registry) Login(dir string) error {
	enc := base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Pass))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Addr, enc)
	return os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600)
}

// Blob is the path of a blob in the registry's storage (to tamper with it).
func (r *Registry) Blob(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// FreeAddr picks a free port on 127.0.0.1.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

package ocichain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// DefaultTimeout bounds connecting to a registry, waiting for its answer,
// and any stall of a transfer: a registry that is down or hangs costs at
// most this much before the build goes on locally.
const DefaultTimeout = 10 * time.Second

// RegistryOptions configure access to a registry.
type RegistryOptions struct {
	// Insecure talks plain HTTP (a registry on localhost or a lab network).
	Insecure bool
	// Timeout: see DefaultTimeout.
	Timeout time.Duration
}

// Remote is one repository of a registry (REF = registry/repo[:tag]).
type Remote struct {
	repo    *remote.Repository
	ref     registry.Reference
	timeout time.Duration
}

// OpenRegistry prepares access to the repository named by ref. Credentials
// come from the files docker and podman write (`docker login`,
// `podman login`): $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
// ~/.config/containers/auth.json, $DOCKER_CONFIG/config.json or
// ~/.docker/config.json (and the credential helpers they name).
func OpenRegistry(ref string, opts RegistryOptions) (*Remote, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%q is not a registry reference (registry/repository[:tag]): %w", ref, err)
	}
	if r.Reference != "" {
		if err := r.ValidateReferenceAsTag(); err != nil {
			return nil, fmt.Errorf("%q: give a tag, not a digest: %w", ref, err)
		}
	}
	repo := &remote.Repository{Reference: r, PlainHTTP: opts.Insecure}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = timeout
	tr.ResponseHeaderTimeout = timeout
	repo.Client = &auth.Client{
		Client:     &http.Client{Transport: tr},
		Cache:      auth.NewCache(),
		Credential: credentials.Credential(credentialStore()),
		Header:     http.Header{"User-Agent": {"nixlayer"}},
	}
	// Tags are listed only by people; lookups go by key.
	repo.SkipReferrersGC = true
	return &Remote{repo: repo, ref: r, timeout: timeout}, nil
}

// Target is the repository as an oras target.
func (r *Remote) Target() oras.Target { return r.repo }

// Tag is the tag REF named ("" for none).
func (r *Remote) Tag() string { return r.ref.Reference }

// Timeout is the stall timeout transfers use.
func (r *Remote) Timeout() time.Duration { return r.timeout }

// String is registry/repository.
func (r *Remote) String() string { return r.ref.Registry + "/" + r.ref.Repository }

// Host is the registry's host[:port].
func (r *Remote) Host() string { return r.ref.Registry }

// credentialStore reads the standard auth files, first match wins.
func credentialStore() credentials.Store {
	var stores []credentials.Store
	for _, p := range authFiles() {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if s, err := credentials.NewStore(p, credentials.StoreOptions{}); err == nil {
			stores = append(stores, s)
		}
	}
	if len(stores) == 0 {
		return credentials.NewMemoryStore()
	}
	return credentials.NewStoreWithFallbacks(stores[0], stores[1:]...)
}

func authFiles() []string {
	var files []string
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		files = append(files, f)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		files = append(files, filepath.Join(d, "containers", "auth.json"))
	} else {
		files = append(files, fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid()))
	}
	home, _ := os.UserHomeDir()
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		files = append(files, filepath.Join(d, "containers", "auth.json"))
	} else if home != "" {
		files = append(files, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		files = append(files, filepath.Join(d, "config.json"))
	} else if home != "" {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// SameRepository reports whether two references (registry/repo[:tag])
// name the same repository of the same registry.
func SameRepository(a, b string) bool {
	ra, err := registry.ParseReference(a)
	if err != nil {
		return false
	}
	rb, err := registry.ParseReference(b)
	if err != nil {
		return false
	}
	return strings.EqualFold(ra.Registry, rb.Registry) && ra.Repository == rb.Repository
}

// HostIn reports whether the registry of ref is one of hosts (host or
// host:port), for the config's list of plain-HTTP registries.
func HostIn(ref string, hosts []string) bool {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return false
	}
	for _, h := range hosts {
		if strings.EqualFold(h, r.Registry) || strings.EqualFold(h, r.Host()) {
			return true
		}
	}
	return false
}

// Hint adds what the user can do to the common registry errors: missing
// or refused credentials, a plain-HTTP registry spoken to over HTTPS.
func Hint(err error) error {
	var ec *errcode.ErrorResponse
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auth.ErrBasicCredentialNotFound), errors.As(err, &ec) && (ec.StatusCode == http.StatusUnauthorized || ec.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%w (registry credentials: docker login or podman login; nixlayer reads ~/.docker/config.json and $XDG_RUNTIME_DIR/containers/auth.json)", err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w (a plain-HTTP registry: list it in insecureRegistries in config.json, or pass --insecure)", err)
	}
	return err
}

// watchdog cancels a transfer that makes no progress for timeout.
type watchdog struct {
	timer  *time.Timer
	d      time.Duration
	cancel context.CancelCauseFunc
}

var errStalled = fmt.Errorf("the registry stopped sending or receiving data")

func newWatchdog(ctx context.Context, d time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{d: d, cancel: cancel}
	w.timer = time.AfterFunc(d, func() { cancel(fmt.Errorf("%w for %s", errStalled, d)) })
	return ctx, w
}

func (w *watchdog) touch() { w.timer.Reset(w.d) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// Package sandbox runs one process in a bubblewrap sandbox that reproduces
// the world a Nix builder sees: its own namespaces, no network, the input
// closure as the only store contents, /build as the working directory, the
// same environment variables, identity and /etc files.
package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Bind is a host path made visible inside the sandbox.
type Bind struct {
	Source, Target string
	Optional       bool // skip when Source does not exist (Nix's trailing "?")
	// Symlink, when set, makes Target a symlink to it instead of a bind
	// (newer Nix copies a symlink source into the sandbox).
	Symlink string
}

// Spec describes one sandboxed process.
type Spec struct {
	// Root holds the persistent parts of the builder's filesystem: build/
	// (→ /build), tmp/ (→ /tmp) and store/ (→ the store directory, where
	// the outputs appear).
	Root     string
	StoreDir string   // usually /nix/store
	Inputs   []string // store paths of the input closure, bound read-only
	Binds    []Bind   // Nix's sandbox-paths and extra-sandbox-paths
	Env      map[string]string
	Args     []string // program and arguments, as seen inside
	Network  bool     // only fixed-output derivations get the network
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	// ExtraFiles become fds 3, 4, … inside, as with exec.Cmd.
	ExtraFiles []*os.File
	// Interactive keeps the controlling terminal (for shells).
	Interactive bool
	// Terminal: Stdin is a terminal that becomes the process's controlling
	// terminal in a session of its own (a shell on the daemon's pty).
	Terminal bool
}

// BuildDir is where the build directory appears inside, as in Nix 2.8.
const BuildDir = "/build"

// Builder identity inside the sandbox, as Nix sets it.
const (
	BuilderUID = 1000
	BuilderGID = 100
)

// Command prepares the bubblewrap command for a spec; etcDir receives the
// generated /etc files and must outlive the command.
func Command(ctx context.Context, spec Spec, etcDir string) (*exec.Cmd, error) {
	bwrap, err := Bwrap()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"build", "tmp", "store"} {
		if err := os.MkdirAll(filepath.Join(spec.Root, d), 0o755); err != nil {
			return nil, fmt.Errorf("prepare sandbox root %s: %w", spec.Root, err)
		}
	}
	// Nix's /tmp is world-writable and sticky.
	if err := os.Chmod(filepath.Join(spec.Root, "tmp"), 0o1777|os.ModeSticky); err != nil {
		return nil, fmt.Errorf("prepare sandbox root %s: %w", spec.Root, err)
	}
	if err := writeEtc(etcDir); err != nil {
		return nil, err
	}
	a := bwrapArgs(spec, etcDir)
	cmd := exec.CommandContext(ctx, bwrap, a...)
	cmd.Stdin = spec.Stdin
	cmd.Stdout = spec.Stdout
	cmd.Stderr = spec.Stderr
	cmd.ExtraFiles = spec.ExtraFiles
	if spec.Terminal {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	return cmd, nil
}

// bwrapArgs are bubblewrap's arguments for a spec: the whole builder world
// but for the files in etcDir.
func bwrapArgs(spec Spec, etcDir string) []string {
	storeDir := spec.StoreDir
	if storeDir == "" {
		storeDir = "/nix/store"
	}
	a := namespaceArgs(spec.Network)
	if !spec.Interactive {
		a = append(a, "--new-session")
	}
	// Host sandbox paths first, so the store and build dirs are not shadowed
	// by a broad bind such as /nix.
	for _, b := range spec.Binds {
		op := "--ro-bind"
		switch {
		case b.Symlink != "":
			a = append(a, "--symlink", b.Symlink, b.Target)
			continue
		case b.Optional:
			op = "--ro-bind-try"
		}
		a = append(a, op, b.Source, b.Target)
	}
	a = append(a,
		"--bind", filepath.Join(spec.Root, "store"), storeDir,
		"--bind", filepath.Join(spec.Root, "build"), BuildDir,
		"--bind", filepath.Join(spec.Root, "tmp"), "/tmp",
	)
	for _, p := range spec.Inputs {
		a = append(a, "--ro-bind", p, p)
	}
	a = append(a,
		"--dev", "/dev",
		"--dev-bind-try", "/dev/kvm", "/dev/kvm", // Nix passes kvm through when the host has it
		"--proc", "/proc",
		"--ro-bind", filepath.Join(etcDir, "passwd"), "/etc/passwd",
		"--ro-bind", filepath.Join(etcDir, "group"), "/etc/group",
		"--ro-bind", filepath.Join(etcDir, "hosts"), "/etc/hosts",
		"--chdir", BuildDir,
	)
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		a = append(a, "--setenv", k, spec.Env[k])
	}
	a = append(a, "--")
	return append(a, spec.Args...)
}

// Fingerprint digests what this package adds to every builder's world (the
// namespaces, identity, mounts, /etc files and default environment), so
// that cache keys change when it does. The inputs, binds and derivation
// environment are the caller's to key.
func Fingerprint() string {
	h := sha256.New()
	for _, a := range bwrapArgs(Spec{Root: "/ROOT", StoreDir: "/nix/store"}, "/ETC") {
		fmt.Fprintf(h, "arg %q\n", a)
	}
	etc := etcFiles()
	for _, name := range slices.Sorted(maps.Keys(etc)) {
		fmt.Fprintf(h, "etc %s %q\n", name, etc[name])
	}
	env := Env(nil, 0)
	delete(env, "NIX_BUILD_CORES") // the machine's, like Nix's own builds
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(h, "env %s=%q\n", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// namespaceArgs are the namespaces and identity of every sandbox.
func namespaceArgs(network bool) []string {
	a := []string{
		"--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
		"--uid", strconv.Itoa(BuilderUID), "--gid", strconv.Itoa(BuilderGID),
		"--hostname", "localhost",
		"--die-with-parent",
		"--clearenv",
	}
	if !network {
		a = append(a, "--unshare-net")
	}
	return a
}

// Bwrap finds bubblewrap.
func Bwrap() (string, error) {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		return "", fmt.Errorf("bubblewrap (bwrap) is not installed: apt-get install bubblewrap: %w", err)
	}
	return bwrap, nil
}

// Check runs bubblewrap once with the namespaces of a build (a throwaway
// sandbox that only asks bwrap for its version), so a host where it cannot
// work (not installed, user namespaces denied, inside a chroot) is found
// before a build is accepted.
func Check(ctx context.Context) error {
	bwrap, err := Bwrap()
	if err != nil {
		return err
	}
	args := append(namespaceArgs(false), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--", bwrap, "--version")
	out, err := exec.CommandContext(ctx, bwrap, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("bubblewrap cannot create the sandbox of a build: %s", msg)
	}
	return nil
}

// CleanMountpoints removes the empty files and directories bubblewrap
// created in Root/store as mount points for the inputs, so that only the
// outputs stay in the layer.
func CleanMountpoints(root string, inputs []string) error {
	for _, p := range inputs {
		mp := filepath.Join(root, "store", filepath.Base(p))
		fi, err := os.Lstat(mp)
		if err != nil {
			continue
		}
		if fi.IsDir() || fi.Size() == 0 {
			if err := os.Remove(mp); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("remove mount point %s: %w", mp, err)
			}
		}
	}
	return nil
}

// etcFiles are the /etc files Nix generates for a builder.
func etcFiles() map[string]string {
	return map[string]string{
		"passwd": "root:x:0:0:Nix build user:/build:/noshell\n" +
			"nixbld:x:1000:100:Nix build user:/build:/noshell\n" +
			"nobody:x:65534:65534:Nobody:/:/noshell\n",
		"group": "root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n",
		"hosts": "127.0.0.1 localhost\n::1 localhost\n",
	}
}

func writeEtc(dir string) error {
	files := etcFiles()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("prepare sandbox /etc: %w", err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("prepare sandbox /etc: %w", err)
		}
	}
	return nil
}

// Env is the builder's environment as Nix builds it: a few defaults the
// derivation may override, the derivation's attributes, then the variables
// Nix always forces (build directory, log fd, terminal).
func Env(drvEnv map[string]string, cores int) map[string]string {
	env := map[string]string{
		"PATH":            "/path-not-set",
		"HOME":            "/homeless-shelter",
		"NIX_STORE":       "/nix/store",
		"NIX_BUILD_CORES": strconv.Itoa(cores),
	}
	for k, v := range drvEnv {
		env[k] = v
	}
	for _, k := range []string{"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP"} {
		env[k] = BuildDir
	}
	env["PWD"] = BuildDir
	env["NIX_LOG_FD"] = "2"
	env["TERM"] = "xterm-256color"
	return env
}

// Package e2etest holds helpers for end-to-end tests that run the real
// nixlayer binary against real Nix. They run only with NIXLAYER_E2E=1 (set
// by `make test`), as root with Nix and bubblewrap installed.
package e2etest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

func init() {
	// Tests start the background path-map learner themselves when they
	// want it: a learner outliving its test would race its cleanup.
	os.Setenv("NIXLAYER_BACKGROUND_LEARN", "0")
	// CI=true makes every resumed result audited (a clean build in the
	// background): tests choose config.json's audit themselves instead.
	os.Unsetenv("CI")
}

// Enabled reports whether end-to-end tests should run.
func Enabled() bool { return os.Getenv("NIXLAYER_E2E") == "1" }

// Require skips the test unless end-to-end tests are enabled.
func Require(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skip("end-to-end test: set NIXLAYER_E2E=1 (make test) to run with real Nix")
	}
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end tests need root (Nix store writes, overlay mounts)")
	}
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Testdata is the fixture package set.
func Testdata() string { return filepath.Join(RepoRoot(), "testdata") }

// WriteFlake writes the fixtures' flake (testdata/flake/flake.nix.in, with
// the fixtures' directory and salt filled in) as dir/flake.nix: a flake
// with path: inputs only, whose packages are the fixtures' derivations.
func WriteFlake(dir, salt string) error {
	tmpl, err := os.ReadFile(filepath.Join(Testdata(), "flake", "flake.nix.in"))
	if err != nil {
		return fmt.Errorf("reading the flake template: %w", err)
	}
	vars := map[string]string{"TESTDATA": Testdata(), "SALT": salt}
	text := os.Expand(string(tmpl), func(k string) string { return vars[k] })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing the flake: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(text), 0o644); err != nil {
		return fmt.Errorf("writing the flake: %w", err)
	}
	return nil
}

// BuildBinary compiles nixlayer into dir and returns its path.
func BuildBinary(dir string) (string, error) { return BuildBinaryWith(dir, nil) }

// BuildBinaryWith compiles nixlayer into dir with some of its source files
// (paths relative to the repository) replaced, as another version of
// nixlayer would be.
func BuildBinaryWith(dir string, replace map[string]string) (string, error) {
	bin := filepath.Join(dir, "nixlayer")
	args := []string{"build", "-o", bin}
	if len(replace) > 0 {
		overlay := map[string]map[string]string{"Replace": {}}
		for rel, content := range replace {
			f := filepath.Join(dir, "overlay-"+strings.ReplaceAll(rel, "/", "_"))
			if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
				return "", err
			}
			overlay["Replace"][filepath.Join(RepoRoot(), rel)] = f
		}
		js, _ := json.Marshal(overlay)
		of := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(of, js, 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", of)
	}
	cmd := exec.Command("go", append(args, "./cmd/nixlayer")...)
	cmd.Dir = RepoRoot()
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
}

// Salt is a fresh value for the fixtures' salt argument, so a test gets
// output paths no other run has built.
func Salt() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// PairableSalt is a fresh salt under which every pair of the
// expressions' builds teaches an exact path map: their output paths'
// hashes differ at every index (runner's learning from a rebuild, which
// Nix's hashes allow about one time in three per output). expr gives the
// nix-instantiate arguments of each expression for a salt; dir is where
// they run.
func PairableSalt(dir string, exprs ...func(salt string) []string) (string, error) {
	return saltWhere(dir, true, exprs...)
}

// UnpairableSalt is a fresh salt under which the expressions' output
// hashes agree at some index: a rebuild teaches no map, the background
// learner does (the session a test wants to follow that path).
func UnpairableSalt(dir string, exprs ...func(salt string) []string) (string, error) {
	return saltWhere(dir, false, exprs...)
}

func saltWhere(dir string, pairable bool, exprs ...func(salt string) []string) (string, error) {
	s, err := SaltWhere(dir, func(outs [][]string) bool { return allDiffer(outs) == pairable }, exprs...)
	if err != nil {
		return "", fmt.Errorf("no salt out of 60 gives output hashes that differ at every index (or, for UnpairableSalt, agree at one)")
	}
	return s, nil
}

// SaltWhere is a fresh salt under which the expressions' output paths
// (one list per expression, sorted by output name) satisfy ok.
func SaltWhere(dir string, ok func(outs [][]string) bool, exprs ...func(salt string) []string) (string, error) {
	for range 60 {
		salt := Salt()
		var outs [][]string
		for _, expr := range exprs {
			o, err := outputsOf(dir, expr(salt))
			if err != nil {
				return "", err
			}
			outs = append(outs, o)
		}
		if ok(outs) {
			return salt, nil
		}
	}
	return "", fmt.Errorf("no salt out of 60 gives the output paths wanted")
}

// outputsOf instantiates an expression and lists its output paths.
func outputsOf(dir string, args []string) ([]string, error) {
	r := Run(dir, nil, "nix-instantiate", args...)
	if r.Err != nil {
		return nil, fmt.Errorf("nix-instantiate %s: %w\n%s", strings.Join(args, " "), r.Err, r.Stderr)
	}
	drvs := Lines(r.Stdout)
	if len(drvs) == 0 {
		return nil, fmt.Errorf("nix-instantiate %s printed no derivation", strings.Join(args, " "))
	}
	r = Run(dir, nil, "nix-store", "-q", "--outputs", drvs[len(drvs)-1])
	if r.Err != nil {
		return nil, fmt.Errorf("nix-store -q --outputs: %w\n%s", r.Err, r.Stderr)
	}
	outs := Lines(r.Stdout)
	name := func(p string) string { return strings.TrimLeft(filepath.Base(p), "0123456789abcdfghijklmnpqrsvwxyz") }
	sort.Slice(outs, func(i, j int) bool { return name(outs[i]) < name(outs[j]) })
	return outs, nil
}

// allDiffer: for every two lists of output paths (sorted by name), the
// hashes of the same output differ at every index.
func allDiffer(outs [][]string) bool {
	for a := range outs {
		for b := a + 1; b < len(outs); b++ {
			if len(outs[a]) != len(outs[b]) {
				return false
			}
			for i, pa := range outs[a] {
				ha, hb := filepath.Base(pa), filepath.Base(outs[b][i])
				for k := 0; k < 32 && k < len(ha) && k < len(hb); k++ {
					if ha[k] == hb[k] {
						return false
					}
				}
			}
		}
	}
	return true
}

// Result of a command.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Run runs a command in dir.
func Run(dir string, env []string, name string, args ...string) Result {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// Lines splits output into trimmed non-empty lines.
func Lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Main is TestMain for a package whose end-to-end tests run the nixlayer
// binary: in a child containers-storage re-executes it runs that child's
// work; otherwise it runs the tests, with end-to-end tests enabled after
// building the binary into *bin (removed afterwards), and exits.
func Main(m *testing.M, bin *string) {
	if reexec.Init() {
		return
	}
	os.Exit(runWithBinary(m, bin))
}

func runWithBinary(m *testing.M, bin *string) int {
	if !Enabled() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "nixlayer-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, "building nixlayer:", err)
		return 1
	}
	return m.Run()
}

package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/sandbox"
	"github.com/nixlayer/nixlayer/shellstate"
)

// job is a derivation made ready to plan and build: inputs realised, the
// sandbox described, the stdenv asked for its phases.
type job struct {
	drv        *drv.Derivation
	pkg        string   // package identity across versions
	closure    []string // store paths visible in the sandbox
	binds      []sandbox.Bind
	env        map[string]string
	shellFlags []string // builder flags before the script, e.g. -e
	// splittable is false for builders nixlayer cannot run phase by phase;
	// they are built as one layer.
	splittable bool
	whyWhole   string
	probe      *probe
	// attrs are the derivation's attributes with output paths replaced by
	// placeholders, so keys do not depend on them.
	attrs map[string]string
	// unreferencedInputs are inputs no attribute mentions (they key the
	// first phase).
	unreferencedInputs []string
}

// probe is what the stdenv told about itself.
type probe struct {
	Phases []string          `json:"phases"`
	Funcs  map[string]string `json:"funcs"` // stdenv functions after setup
	// HookArrays are the stdenv's hook arrays after setup (fixupOutputHooks
	// → the names in it), which runHook runs: the placement rule follows
	// them into the setup hooks' functions.
	HookArrays map[string][]string `json:"hookArrays"`
	Start      *shellstate.Delta   `json:"start"` // state genericBuild sets up before the first phase
	// EndsEarly is set when a phase's code exits the builder: Nix then
	// skips the remaining phases, so the derivation is built in one step.
	EndsEarly string `json:"endsEarly,omitempty"`
}

// readDerivation reads the derivation at drvPath only when it is one Nix
// would build: a valid store path ending in .drv (nothing outside the
// store is opened, so every other path gets the same refusal), whose store
// path and output paths are the ones its contents give. Root builds
// whatever a user names here, and registers its outputs.
func (e *Engine) readDerivation(ctx context.Context, drvPath string) (*drv.Derivation, error) {
	notDrv := fmt.Errorf("%q is not a derivation in the Nix store: nixlayer builds only a valid store path ending in .drv (as nix-instantiate prints)", drvPath)
	if !storeDrvPath(drvPath) {
		return nil, notDrv
	}
	valid, err := nixstore.IsValid(ctx, drvPath)
	if err != nil {
		return nil, fmt.Errorf("checking derivation %s: %w", drvPath, err)
	}
	if !valid {
		return nil, notDrv
	}
	if err := e.derivations.Check(drvPath); err != nil {
		return nil, err
	}
	return drv.Read(drvPath)
}

// storeDrvPath: p names a .drv at the top of the store (what it holds is
// checked by readDerivation). A store path is everyone's to read, unlike a
// path a user names elsewhere.
func storeDrvPath(p string) bool {
	return p == filepath.Clean(p) && nixstore.IsStorePath(p) && strings.HasSuffix(p, ".drv")
}

// prepare reads and realises what a build of drvPath needs.
func (e *Engine) prepare(ctx context.Context, drvPath string, log io.Writer) (*job, error) {
	d, err := e.readDerivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	if a := Unsupported(d); a != "" {
		return nil, fmt.Errorf("%s uses %s, which nixlayer does not reproduce: build it with nix-build", d.Name, a)
	}
	var realise []string
	for p, outs := range d.InputDrvs {
		for _, o := range outs {
			realise = append(realise, p+"!"+o)
		}
	}
	sort.Strings(realise)
	if err := nixstore.Realise(nixstore.WithLog(ctx, log), realise...); err != nil {
		return nil, fmt.Errorf("building the inputs of %s: %w", d.Name, err)
	}
	inputs, err := drv.InputPaths(d)
	if err != nil {
		return nil, err
	}
	closure, err := nixstore.Closure(ctx, inputs)
	if err != nil {
		return nil, err
	}
	bps, err := nixstore.SandboxPaths(ctx)
	if err != nil {
		return nil, err
	}
	j := &job{drv: d, env: builderEnv(d, e.opts.Cores)}
	var storeSources []string
	for _, b := range bps {
		j.binds = append(j.binds, sandbox.Bind{Source: b.Source, Target: b.Target, Optional: b.Optional, Symlink: b.Symlink})
		if b.StorePath != "" {
			storeSources = append(storeSources, b.StorePath)
		}
	}
	// Nix adds the closure of sandbox paths in the store (e.g. the default
	// /bin/sh of a Nix built with a sandbox shell) to what the builder sees.
	if j.closure, err = withSandboxClosure(ctx, closure, storeSources); err != nil {
		return nil, err
	}
	j.attrs, err = attributes(d)
	if err != nil {
		return nil, err
	}
	j.pkg = packageName(d, j.attrs)
	for _, in := range inputs {
		referenced := false
		for _, v := range d.Env {
			if strings.Contains(v, in) {
				referenced = true
				break
			}
		}
		if !referenced {
			j.unreferencedInputs = append(j.unreferencedInputs, in)
		}
	}
	j.splittable, j.whyWhole, j.shellFlags = splittable(d)
	if j.splittable {
		j.probe, err = e.runProbe(ctx, j, log)
		if err != nil {
			return nil, err
		}
		if j.probe.EndsEarly != "" {
			j.splittable, j.whyWhole = false, j.probe.EndsEarly+" exits the builder, ending the build early"
		}
	}
	return j, nil
}

// splittable decides whether the builder is a stdenv whose genericBuild
// nixlayer can run phase by phase.
func splittable(d *drv.Derivation) (bool, string, []string) {
	switch {
	case d.IsFixedOutput():
		return false, "fixed-output derivation", nil
	case d.Env["stdenv"] == "" && !d.StructuredAttrs():
		return false, "no stdenv attribute", nil
	case d.Env["buildCommand"] != "" || d.Env["buildCommandPath"] != "":
		return false, "buildCommand builds in one step", nil
	case len(d.Args) == 0:
		return false, "builder has no script argument", nil
	}
	var flags []string
	for _, a := range d.Args[:len(d.Args)-1] {
		if !strings.HasPrefix(a, "-") {
			// e.g. nixpkgs' source-stdenv.sh before default-builder.sh
			continue
		}
		flags = append(flags, a)
	}
	script, err := readBuilderScript(d.Args[len(d.Args)-1])
	if err != nil {
		return false, err.Error(), nil
	}
	if !bytes.Contains(script, []byte("genericBuild")) {
		return false, "builder script does not call genericBuild", nil
	}
	base := filepath.Base(d.Builder)
	if !strings.Contains(base, "bash") && !strings.HasSuffix(base, "-sh") {
		return false, "builder is not bash", nil
	}
	return true, "", flags
}

// maxBuilderScript bounds the builder script read to decide whether a
// derivation is a stdenv build (nixpkgs' default-builder.sh is a few lines).
const maxBuilderScript = 1 << 20

// readBuilderScript reads the builder's script argument, a path the
// derivation chooses: only a regular file inside the store (no symlink
// followed, opened non-blocking) of at most maxBuilderScript bytes, never
// a device, FIFO or file elsewhere on the host.
func readBuilderScript(p string) ([]byte, error) {
	store := nixstore.StoreDir()
	rel, err := filepath.Rel(store, p)
	if err != nil || !filepath.IsAbs(p) || p != filepath.Clean(p) || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("builder script %q is not a file in the Nix store %s, so it was not read", p, store)
	}
	dir, err := os.OpenRoot(store)
	if err != nil {
		return nil, fmt.Errorf("builder script %q: %w", p, err)
	}
	defer dir.Close()
	f, _, err := treefile.Open(dir, rel)
	if err != nil {
		return nil, fmt.Errorf("builder script %q was not read (only a regular file in the store is): %w", p, err)
	}
	defer f.Close()
	script, err := io.ReadAll(io.LimitReader(f, maxBuilderScript+1))
	if err != nil {
		return nil, fmt.Errorf("builder script %q: %w", p, err)
	}
	if len(script) > maxBuilderScript {
		return nil, fmt.Errorf("builder script %q is larger than %d MiB, so it was not read", p, maxBuilderScript>>20)
	}
	return script, nil
}

// attributes are the derivation's attributes (top-level keys of __json for
// structured attrs) with output paths replaced by placeholders.
func attributes(d *drv.Derivation) (map[string]string, error) {
	raw := map[string]string{}
	if d.StructuredAttrs() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(d.Env["__json"]), &m); err != nil {
			return nil, fmt.Errorf("%s: structured attributes are not valid JSON: %w", d.Path, err)
		}
		for k, v := range m {
			raw[k] = string(v)
		}
		for k, v := range d.Env {
			if k != "__json" {
				raw[k] = v
			}
		}
	} else {
		for k, v := range d.Env {
			raw[k] = v
		}
	}
	norm := map[string]string{}
	for k, v := range raw {
		norm[k] = placeholders(v, d.Outputs)
	}
	return norm, nil
}

// placeholders replaces each output path by «name», making values
// independent of the output paths (which change with every edit).
func placeholders(v string, outputs map[string]string) string {
	for name, p := range outputs {
		if p != "" {
			v = strings.ReplaceAll(v, p, "«"+name+"»")
		}
	}
	return v
}

// runProbe asks the stdenv for the phase list and its functions, in a
// throwaway sandbox. The answer depends only on the derivation and its
// inputs, so it is kept per derivation.
func (e *Engine) runProbe(ctx context.Context, j *job, log io.Writer) (*probe, error) {
	cacheFile := e.probeFile(j)
	if data, err := os.ReadFile(cacheFile); err == nil {
		var p probe
		if json.Unmarshal(data, &p) == nil && len(p.Phases) > 0 {
			return &p, nil
		}
	}
	tmp, err := os.MkdirTemp(e.opts.CacheDir, "probe-")
	if err != nil {
		return nil, fmt.Errorf("probe directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := writeAttrsFiles(j, root); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	res, err := e.runStep(ctx, j, step{root: root, etc: filepath.Join(tmp, "etc"), mode: "probe", log: &out})
	if err != nil {
		return nil, err
	}
	if res.exit != 0 {
		return nil, fmt.Errorf("asking the stdenv of %s for its phases failed (exit %d):\n%s", j.drv.Name, res.exit, logtail.Lines(out.String(), 20))
	}
	caps, err := shellstate.ParseDumps(res.dumps)
	if err != nil || len(caps) != 2 {
		return nil, fmt.Errorf("asking the stdenv of %s for its phases: bad state capture: %v\n%s", j.drv.Name, err, logtail.Lines(out.String(), 20))
	}
	p := &probe{Funcs: caps[0].Funcs, HookArrays: hookArrays(caps[0]), Start: shellstate.Diff(caps[0], caps[1])}
	p.Phases = strings.Fields(string(res.phases))
	if len(p.Phases) == 0 {
		return nil, fmt.Errorf("the stdenv of %s reported no phases", j.drv.Name)
	}
	if data, err := json.Marshal(p); err == nil {
		os.MkdirAll(filepath.Dir(cacheFile), 0o700)
		os.WriteFile(cacheFile, data, 0o600)
	}
	return p, nil
}

// hookArrays are the arrays named *Hooks in a capture, each with the
// function names among its words (an element may also be code).
func hookArrays(c *shellstate.Capture) map[string][]string {
	out := map[string][]string{}
	for name, v := range c.Vars {
		if !strings.HasSuffix(name, "Hooks") || !strings.Contains(v.Flags, "a") {
			continue
		}
		_, value, _ := strings.Cut(v.Decl, "=")
		for _, w := range strings.FieldsFunc(value, func(r rune) bool {
			return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			if _, ok := c.Funcs[w]; ok {
				out[name] = append(out[name], w)
			}
		}
	}
	return out
}

// builderEnv is the environment Nix gives the builder. With structured
// attributes the attributes are not in the environment at all, and Nix 2.8
// points NIX_ATTRS_*_FILE at its host-side build directory (a Nix bug that
// builders work around; reproduced so they take the same path).
func builderEnv(d *drv.Derivation, cores int) map[string]string {
	if !d.StructuredAttrs() {
		env := sandbox.Env(d.Env, cores)
		applyPassAsFile(d, env)
		return env
	}
	env := sandbox.Env(nil, cores)
	_, drvName, _ := nixstore.SplitStorePath(d.Path)
	hostTop := "/tmp/nix-build-" + drvName + "-0"
	env["NIX_ATTRS_JSON_FILE"] = hostTop + "/.attrs.json"
	env["NIX_ATTRS_SH_FILE"] = hostTop + "/.attrs.sh"
	return env
}

// packageName is pname when the derivation has one (so builds of other
// versions count as earlier builds), else its name.
func packageName(d *drv.Derivation, attrs map[string]string) string {
	p := attrs["pname"]
	if d.StructuredAttrs() {
		var s string
		if json.Unmarshal([]byte(p), &s) == nil {
			p = s
		}
	}
	if p == "" {
		return d.Name
	}
	return p
}

// probeFile is where a derivation's probe is kept: it depends only on the
// derivation, its inputs, the sandbox paths and what nixlayer runs.
func (e *Engine) probeFile(j *job) string {
	parts := append([]string{recipe(), j.drv.Path, strings.Join(j.closure, "\n")}, bindParts(j.binds)...)
	return filepath.Join(e.opts.CacheDir, "probes", digest(parts...)[:32]+".json")
}

// markEndsEarly remembers that a phase of this derivation exits the builder.
func (e *Engine) markEndsEarly(j *job, phase string) {
	j.probe.EndsEarly = phase
	if data, err := json.Marshal(j.probe); err == nil {
		os.WriteFile(e.probeFile(j), data, 0o600)
	}
}

// withSandboxClosure adds the closure of the valid store paths among
// sources to closure (invalid ones are ignored, as Nix does).
func withSandboxClosure(ctx context.Context, closure, sources []string) ([]string, error) {
	var valid []string
	for _, p := range sources {
		if ok, err := nixstore.IsValid(ctx, p); err == nil && ok {
			valid = append(valid, p)
		}
	}
	if len(valid) == 0 {
		return closure, nil
	}
	extra, err := nixstore.Closure(ctx, valid)
	if err != nil {
		return nil, fmt.Errorf("sandbox paths in the store: %w", err)
	}
	seen := map[string]bool{}
	var all []string
	for _, p := range append(append([]string{}, closure...), extra...) {
		if !seen[p] {
			seen[p] = true
			all = append(all, p)
		}
	}
	sort.Strings(all)
	return all, nil
}

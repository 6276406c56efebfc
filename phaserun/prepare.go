package phaserun

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
	"github.com/nixlayer/nixlayer/nixbuild"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/planner"
	"github.com/nixlayer/nixlayer/sandbox"
	"github.com/nixlayer/nixlayer/shellstate"
)

// Job is a derivation made ready to plan and build: inputs realised, the
// sandbox described, the stdenv asked for its phases.
type Job struct {
	Drv        *drv.Derivation
	Pkg        string   // package identity across versions
	Closure    []string // store paths visible in the sandbox
	Binds      []sandbox.Bind
	Env        map[string]string
	ShellFlags []string // builder flags before the script, e.g. -e
	// Splittable is false for builders nixlayer cannot run phase by phase;
	// they are built as one layer.
	Splittable bool
	WhyWhole   string
	Probe      *Probe
	// Attrs are the derivation's attributes with output paths replaced by
	// placeholders, so keys do not depend on them.
	Attrs map[string]string
	// UnreferencedInputs are inputs no attribute mentions (they key the
	// first phase).
	UnreferencedInputs []string
}

// Probe is what the stdenv told about itself.
type Probe struct {
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
func (pr *Runner) ReadDerivation(ctx context.Context, drvPath string) (*drv.Derivation, error) {
	notDrv := fmt.Errorf("%q is not a derivation in the Nix store: nixlayer builds only a valid store path ending in .drv (as nix-instantiate prints)", drvPath)
	if !StoreDrvPath(drvPath) {
		return nil, notDrv
	}
	valid, err := nixstore.IsValid(ctx, drvPath)
	if err != nil {
		return nil, fmt.Errorf("checking derivation %s: %w", drvPath, err)
	}
	if !valid {
		return nil, notDrv
	}
	if err := pr.Derivations.Check(drvPath); err != nil {
		return nil, err
	}
	return drv.Read(drvPath)
}

// storeDrvPath: p names a .drv at the top of the store (what it holds is
// checked by readDerivation). A store path is everyone's to read, unlike a
// path a user names elsewhere.
func StoreDrvPath(p string) bool {
	return p == filepath.Clean(p) && nixstore.IsStorePath(p) && strings.HasSuffix(p, ".drv")
}

// Prepare reads and realises what a build of drvPath needs.
func (pr *Runner) Prepare(ctx context.Context, drvPath string, log io.Writer) (*Job, error) {
	d, err := pr.ReadDerivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	if a := nixbuild.Unsupported(d); a != "" {
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
	j := &Job{Drv: d, Env: nixbuild.BuilderEnv(d, pr.Cores)}
	var storeSources []string
	for _, b := range bps {
		j.Binds = append(j.Binds, sandbox.Bind{Source: b.Source, Target: b.Target, Optional: b.Optional, Symlink: b.Symlink})
		if b.StorePath != "" {
			storeSources = append(storeSources, b.StorePath)
		}
	}
	// Nix adds the closure of sandbox paths in the store (e.g. the default
	// /bin/sh of a Nix built with a sandbox shell) to what the builder sees.
	if j.Closure, err = withSandboxClosure(ctx, closure, storeSources); err != nil {
		return nil, err
	}
	j.Attrs, err = Attributes(d)
	if err != nil {
		return nil, err
	}
	j.Pkg = packageName(d, j.Attrs)
	for _, in := range inputs {
		referenced := false
		for _, v := range d.Env {
			if strings.Contains(v, in) {
				referenced = true
				break
			}
		}
		if !referenced {
			j.UnreferencedInputs = append(j.UnreferencedInputs, in)
		}
	}
	j.Splittable, j.WhyWhole, j.ShellFlags = nixbuild.Splittable(d)
	if j.Splittable {
		j.Probe, err = pr.runProbe(ctx, j, log)
		if err != nil {
			return nil, err
		}
		if j.Probe.EndsEarly != "" {
			j.Splittable, j.WhyWhole = false, j.Probe.EndsEarly+" exits the builder, ending the build early"
		}
	}
	return j, nil
}

// Attributes are the derivation's attributes (top-level keys of __json for
// structured attrs) with output paths replaced by placeholders.
func Attributes(d *drv.Derivation) (map[string]string, error) {
	raw, err := nixbuild.Attributes(d)
	if err != nil {
		return nil, err
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
func (pr *Runner) runProbe(ctx context.Context, j *Job, log io.Writer) (*Probe, error) {
	cacheFile := pr.probeFile(j)
	if data, err := os.ReadFile(cacheFile); err == nil {
		var p Probe
		if json.Unmarshal(data, &p) == nil && len(p.Phases) > 0 {
			return &p, nil
		}
	}
	tmp, err := os.MkdirTemp(pr.CacheDir, "probe-")
	if err != nil {
		return nil, fmt.Errorf("probe directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := writeAttrsFiles(j, root); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	res, err := pr.RunStep(ctx, j, Step{Root: root, Etc: filepath.Join(tmp, "etc"), Mode: "probe", Log: &out})
	if err != nil {
		return nil, err
	}
	if res.Exit != 0 {
		return nil, fmt.Errorf("asking the stdenv of %s for its phases failed (exit %d):\n%s", j.Drv.Name, res.Exit, logtail.Lines(out.String(), 20))
	}
	caps, err := shellstate.ParseDumps(res.Dumps)
	if err != nil || len(caps) != 2 {
		return nil, fmt.Errorf("asking the stdenv of %s for its phases: bad state capture: %v\n%s", j.Drv.Name, err, logtail.Lines(out.String(), 20))
	}
	p := &Probe{Funcs: caps[0].Funcs, HookArrays: hookArrays(caps[0]), Start: shellstate.Diff(caps[0], caps[1])}
	p.Phases = strings.Fields(string(res.Phases))
	if len(p.Phases) == 0 {
		return nil, fmt.Errorf("the stdenv of %s reported no phases", j.Drv.Name)
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
func (pr *Runner) probeFile(j *Job) string {
	parts := append([]string{Recipe(), j.Drv.Path, strings.Join(j.Closure, "\n")}, BindParts(j.Binds)...)
	return filepath.Join(pr.CacheDir, "probes", planner.Digest(parts...)[:32]+".json")
}

// markEndsEarly remembers that a phase of this derivation exits the builder.
func (pr *Runner) MarkEndsEarly(j *Job, phase string) {
	j.Probe.EndsEarly = phase
	if data, err := json.Marshal(j.Probe); err == nil {
		os.WriteFile(pr.probeFile(j), data, 0o600)
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

// BindParts are the key parts of Nix's sandbox paths.
func BindParts(binds []sandbox.Bind) []string {
	var parts []string
	for _, b := range binds {
		parts = append(parts, "bind:"+b.Source+"="+b.Target)
	}
	return parts
}

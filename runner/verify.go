package runner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/rewrite"
)

// Difference is one file that differs between a layered result and Nix's
// own build.
type Difference struct {
	Output string `json:"output"`
	Path   string `json:"path"` // relative to the output
	Why    string `json:"why"`
}

// Verification compares a layered result with a clean Nix build.
type Verification struct {
	Drv         string            `json:"drv"`
	Identical   bool              `json:"identical"`
	Layered     map[string]string `json:"layered"` // output → where the layered result is
	Clean       map[string]string `json:"clean"`   // output → Nix's build
	NARHash     map[string]string `json:"narHash"` // of the layered result
	Differences []Difference      `json:"differences,omitempty"`
	// Exactness is nixlayer's own verdict on the layered result when it
	// reused layers built for other output paths: the rule that decided
	// and every file whose bytes the path map could not explain.
	Exactness *Exactness `json:"exactness,omitempty"`
}

// Verify builds drvPath the way Nix does (nix-store --realise without any
// build hook, or nix-build --check when the output is already valid) and
// compares it file by file with the layered result.
func (e *Engine) Verify(ctx context.Context, drvPath string, log io.Writer) (*Verification, error) {
	return e.VerifyIn(ctx, drvPath, "", log)
}

// VerifyIn is Verify for results kept in resultsDir ("" for the cache's).
func (e *Engine) VerifyIn(ctx context.Context, drvPath, resultsDir string, log io.Writer) (*Verification, error) {
	d, err := drv.Read(drvPath)
	if err != nil {
		return nil, err
	}
	v := &Verification{Drv: drvPath, Layered: map[string]string{}, Clean: map[string]string{}, NARHash: map[string]string{}, Exactness: e.LastVerdict(drvPath)}
	valid := true
	for name, p := range d.Outputs {
		inStore, _ := nixstore.IsValid(ctx, p)
		cached := filepath.Join(e.resultsDir(resultsDir), filepath.Base(p))
		if target, err := os.Readlink(cached); err == nil && target == p && inStore {
			v.Layered[name] = p // settled: the cached copy became a link to the registered output
		} else if _, err := os.Lstat(cached); err == nil {
			v.Layered[name] = cached
		} else if inStore {
			v.Layered[name] = p
		} else {
			return nil, fmt.Errorf("no layered result of %s for output %s: run nixlayer build first", d.Name, name)
		}
		valid = valid && inStore
	}
	// Nix's own build: if nixlayer is Nix's build hook, it declines when
	// NIXLAYER_HOOK_DECLINE=1 (hook.DeclineAllEnv); any other hook is Nix's.
	if !valid {
		cmd := exec.CommandContext(ctx, "nix-store", "--realise", drvPath)
		cmd.Env = append(os.Environ(), "NIXLAYER_HOOK_DECLINE=1")
		cmd.Stdout, cmd.Stderr = io.Discard, orDiscard(log)
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building %s with Nix: %w", d.Name, err)
		}
		for name, p := range d.Outputs {
			v.Clean[name] = p
		}
	} else {
		// The outputs are valid: let Nix rebuild and keep what differs.
		cmd := exec.CommandContext(ctx, "nix-store", "--realise", "--check", "--keep-failed", drvPath)
		cmd.Env = append(os.Environ(), "NIXLAYER_HOOK_DECLINE=1")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, io.MultiWriter(orDiscard(log), &stderr)
		checkErr := cmd.Run()
		for name, p := range d.Outputs {
			v.Clean[name] = p
			if _, err := os.Lstat(p + ".check"); err == nil {
				v.Clean[name] = p + ".check"
			}
		}
		if checkErr != nil && !strings.Contains(stderr.String(), "may not be deterministic") {
			return nil, fmt.Errorf("rebuilding %s with Nix: %w\n%s", d.Name, checkErr, logtail.Lines(stderr.String(), 10))
		}
	}
	for _, name := range sortedKeys(d.Outputs) {
		sum, _, err := nixstore.NARHash(v.Layered[name])
		if err != nil {
			return nil, err
		}
		v.NARHash[name] = nixstore.FormatHash(sum)
		if v.Layered[name] == v.Clean[name] {
			continue // the layered output is the one Nix just checked
		}
		diffs, err := compareTrees(v.Layered[name], v.Clean[name])
		if err != nil {
			return nil, err
		}
		for _, df := range diffs {
			df.Output = name
			v.Differences = append(v.Differences, df)
		}
	}
	v.Identical = len(v.Differences) == 0
	return v, nil
}

// compareTrees lists the files that differ, with a reason for each.
func compareTrees(a, b string) ([]Difference, error) {
	seen := map[string]bool{}
	var diffs []Difference
	walk := func(root string) error {
		return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			seen[rel] = true
			return nil
		})
	}
	if err := walk(a); err != nil {
		return nil, fmt.Errorf("compare %s: %w", a, err)
	}
	if err := walk(b); err != nil {
		return nil, fmt.Errorf("compare %s: %w", b, err)
	}
	var rels []string
	for r := range seen {
		rels = append(rels, r)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		if why := fileDifference(filepath.Join(a, rel), filepath.Join(b, rel)); why != "" {
			diffs = append(diffs, Difference{Path: rel, Why: why})
		}
	}
	return diffs, nil
}

func fileDifference(a, b string) string {
	fa, ea := os.Lstat(a)
	fb, eb := os.Lstat(b)
	switch {
	case ea != nil:
		return "only in Nix's build"
	case eb != nil:
		return "only in the layered build"
	case fa.Mode().Type() != fb.Mode().Type():
		return "file type differs"
	case fa.Mode()&fs.ModeSymlink != 0:
		ta, _ := os.Readlink(a)
		tb, _ := os.Readlink(b)
		if ta != tb {
			return fmt.Sprintf("symlink target differs: %s vs %s", ta, tb)
		}
		return ""
	case fa.IsDir():
		return ""
	case fa.Mode()&0o100 != fb.Mode()&0o100:
		return "executable bit differs"
	}
	da, err1 := os.ReadFile(a)
	db, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil {
		return "unreadable"
	}
	if bytes.Equal(da, db) {
		return ""
	}
	if len(da) != len(db) {
		return fmt.Sprintf("size differs (%d vs %d bytes)%s", len(da), len(db), contentHint(da))
	}
	i := 0
	for i < len(da) && da[i] == db[i] {
		i++
	}
	return fmt.Sprintf("content differs from byte %d%s", i, contentHint(da))
}

// contentHint names formats whose bytes cannot be rewritten in place.
func contentHint(data []byte) string {
	switch rewrite.FormatOf(data) {
	case rewrite.FormatGzip:
		return " (gzip payload: compressed bytes depend on the path)"
	case rewrite.FormatELF:
		return " (ELF: a build-id or a split path string?)"
	case rewrite.FormatZip:
		return " (zip archive: compressed, with checksums)"
	}
	return ""
}

// LastVerdict is the verdict recorded on the newest build of drvPath
// that reused rewritten layers (nil when there is none): whether its
// outputs are exact, the rule that decided, and the phase an exact build
// reruns from.
func (e *Engine) LastVerdict(drvPath string) *Exactness {
	all, err := e.layers.List()
	if err != nil {
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- { // newest first
		if all[i].Meta.DrvPath == drvPath {
			if ex := e.loadExactness(all[i].ID); ex != nil {
				return ex
			}
		}
	}
	return nil
}

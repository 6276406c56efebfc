// Package verify is the Nix check of a layered result: build the
// derivation the way Nix does, without nixlayer, and compare the two file
// by file (contents, type, executable bit, symlink targets), naming where
// and why each file differs. `nixlayer verify` (through the engine) and
// the audit (two layers' outputs) use it. Trees are read through an
// os.Root of their directory: a result in a user's results directory is
// that user's to change.
package verify

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/internal/logtail"
	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/nixstore/storetree"
	"github.com/nixlayer/nixlayer/results"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/verdict"
)

// Verification compares a layered result with a clean Nix build.
type Verification struct {
	Drv         string               `json:"drv"`
	Identical   bool                 `json:"identical"`
	Layered     map[string]string    `json:"layered"` // output → where the layered result is
	Clean       map[string]string    `json:"clean"`   // output → Nix's build
	NARHash     map[string]string    `json:"narHash"` // of the layered result
	Differences []results.Difference `json:"differences,omitempty"`
	// Exactness is nixlayer's own verdict on the layered result when it
	// reused layers built for other output paths: the rule that decided
	// and every file whose bytes the path map could not explain.
	Exactness *verdict.Exactness `json:"exactness,omitempty"`
}

// Check builds d the way Nix does (nix-store --realise without any build
// hook, or nix-build --check when the output is already valid) and
// compares it file by file with the layered result: in the store, or
// kept in resultsDir. ex is nixlayer's own verdict on that result, shown
// beside Nix's; log gets Nix's output.
func Check(ctx context.Context, d *drv.Derivation, resultsDir string, ex *verdict.Exactness, log io.Writer) (*Verification, error) {
	drvPath := d.Path
	v := &Verification{Drv: drvPath, Layered: map[string]string{}, Clean: map[string]string{}, NARHash: map[string]string{}, Exactness: ex}
	valid := true
	for name, p := range d.Outputs {
		inStore, _ := nixstore.IsValid(ctx, p)
		cached := filepath.Join(resultsDir, filepath.Base(p))
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
		cmd.Stdout, cmd.Stderr = io.Discard, log
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
		cmd.Stdout, cmd.Stderr = io.Discard, io.MultiWriter(log, &stderr)
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
	for _, name := range slices.Sorted(maps.Keys(d.Outputs)) {
		// A result in a user's results directory is that user's to
		// change: it is read through an os.Root of its directory.
		layered, err := openIn(v.Layered[name])
		if err != nil {
			return nil, err
		}
		defer layered.Close()
		sum, _, err := storetree.NARHashIn(layered.dir, layered.name)
		if err != nil {
			return nil, err
		}
		v.NARHash[name] = nixstore.FormatHash(sum)
		if v.Layered[name] == v.Clean[name] {
			continue // the layered output is the one Nix just checked
		}
		clean, err := openIn(v.Clean[name])
		if err != nil {
			return nil, err
		}
		defer clean.Close()
		diffs, err := compareTrees(layered, clean)
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

// treeIn is a tree read through an os.Root of its directory.
type treeIn struct {
	dir  *os.Root
	name string // the tree's name in dir
}

func openIn(p string) (treeIn, error) {
	dir, err := os.OpenRoot(filepath.Dir(p))
	if err != nil {
		return treeIn{}, err
	}
	return treeIn{dir: dir, name: filepath.Base(p)}, nil
}

func (t treeIn) Close() error { return t.dir.Close() }

func (t treeIn) String() string { return filepath.Join(t.dir.Name(), t.name) }

// Compare lists the files in which the trees at a and b differ, with a
// reason for each (Output left empty: the caller's to name).
func Compare(a, b string) ([]results.Difference, error) {
	ta, err := openIn(a)
	if err != nil {
		return nil, err
	}
	defer ta.Close()
	tb, err := openIn(b)
	if err != nil {
		return nil, err
	}
	defer tb.Close()
	return compareTrees(ta, tb)
}

// compareTrees lists the files that differ, with a reason for each.
func compareTrees(a, b treeIn) ([]results.Difference, error) {
	type entry struct{ a, b fs.FileInfo }
	entries := map[string]*entry{}
	if err := storetree.WalkIn(a.dir, a.name, func(rel string, fi fs.FileInfo) error {
		entries[rel] = &entry{a: fi}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("compare %s: %w", a, err)
	}
	if err := storetree.WalkIn(b.dir, b.name, func(rel string, fi fs.FileInfo) error {
		if e := entries[rel]; e != nil {
			e.b = fi
		} else {
			entries[rel] = &entry{b: fi}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("compare %s: %w", b, err)
	}
	rels := make([]string, 0, len(entries))
	for r := range entries {
		rels = append(rels, r)
	}
	sort.Strings(rels)
	var diffs []results.Difference
	for _, rel := range rels {
		e := entries[rel]
		if why := fileDifference(a, b, rel, e.a, e.b); why != "" {
			diffs = append(diffs, results.Difference{Path: cmp.Or(rel, "."), Why: why})
		}
	}
	return diffs, nil
}

func fileDifference(a, b treeIn, rel string, fa, fb fs.FileInfo) string {
	pa, pb := path.Join(a.name, rel), path.Join(b.name, rel)
	switch {
	case fa == nil:
		return "only in Nix's build"
	case fb == nil:
		return "only in the layered build"
	case fa.Mode().Type() != fb.Mode().Type():
		return "file type differs"
	case fa.Mode()&fs.ModeSymlink != 0:
		ta, _ := a.dir.Readlink(pa)
		tb, _ := b.dir.Readlink(pb)
		if ta != tb {
			return fmt.Sprintf("symlink target differs: %s vs %s", ta, tb)
		}
		return ""
	case fa.IsDir():
		return ""
	case fa.Mode()&0o100 != fb.Mode()&0o100:
		return "executable bit differs"
	}
	ra, sa, err1 := treefile.Open(a.dir, pa)
	if err1 != nil {
		return "unreadable"
	}
	defer ra.Close()
	rb, sb, err2 := treefile.Open(b.dir, pb)
	if err2 != nil {
		return "unreadable"
	}
	defer rb.Close()
	// Streamed: outputs may hold files larger than memory.
	head := make([]byte, 512)
	n, _ := io.ReadFull(ra, head)
	head = head[:n]
	at, err := firstDifference(io.MultiReader(bytes.NewReader(head), ra), rb)
	if err != nil {
		return "unreadable"
	}
	switch {
	case at < 0:
		return ""
	case sa.Size() != sb.Size():
		return fmt.Sprintf("size differs (%d vs %d bytes)%s", sa.Size(), sb.Size(), contentHint(head))
	}
	return fmt.Sprintf("content differs from byte %d%s", at, contentHint(head))
}

// firstDifference is the offset of the first byte in which a and b differ
// (-1: identical, same length).
func firstDifference(a, b io.Reader) (int64, error) {
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		for i := 0; i < min(na, nb); i++ {
			if ba[i] != bb[i] {
				return off + int64(i), nil
			}
		}
		if na != nb {
			return off + int64(min(na, nb)), nil
		}
		off += int64(na)
		aEnd := ea == io.EOF || ea == io.ErrUnexpectedEOF
		bEnd := eb == io.EOF || eb == io.ErrUnexpectedEOF
		switch {
		case ea != nil && !aEnd:
			return 0, ea
		case eb != nil && !bEnd:
			return 0, eb
		case aEnd || bEnd:
			return -1, nil
		}
	}
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

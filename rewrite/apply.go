package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/nixlayer/nixlayer/rewrite/buildid"
)

// Apply turns, in place, a tree that holds the paths pathsB (the reference
// tree of the map, or one rewritten from it) into the tree a build with
// pathsC gives: it sets every mapped hash character, recomputes build-ids,
// fixes symlink targets and renames entries. Only mapped files are
// written, so on a copy-on-write layer only they are copied up. Bytes that
// do not hold what the map expects, ids no algorithm reproduces and
// everything learnmap.Learn could not explain make the verdict inexact.
func (m *Map) Apply(root string, pathsB, pathsC map[string]string) (Verdict, error) {
	v := Verdict{Method: m.method()}
	from, to := map[string]string{}, map[string]string{}
	for name, ref := range m.Paths {
		b, c := pathsB[name], pathsC[name]
		if b == "" || c == "" {
			return v, fmt.Errorf("apply path map to %s: no path for output %s", root, name)
		}
		if !sameOutput(b, ref) || !sameOutput(c, ref) {
			v.fail(fmt.Sprintf("(map): output %s: %s or %s is not %s with another hash of the same length", name, b, c, ref))
			return v, nil
		}
		from[name], to[name] = HashPart(b), HashPart(c)
	}
	for _, why := range m.Problems {
		v.fail(why)
	}
	v.Unexplained = append(v.Unexplained, m.Unexplained...)
	for i := range v.Unexplained { // the verdict's own copies: add may extend them
		v.Unexplained[i].Strays = v.Unexplained[i].Strays.clone()
	}
	inTree := func(rel string) string {
		for name, ref := range m.Paths {
			rel = strings.ReplaceAll(rel, HashPart(ref), from[name])
		}
		return filepath.Join(root, filepath.FromSlash(rel))
	}

	// Linker outputs first: stripped copies take their new ids.
	type ids struct{ old, new []byte }
	newIDs := map[string]ids{}
	var carried []FileMap
	for _, f := range m.Files {
		if f.BuildID != nil && f.BuildID.Scheme == buildid.SchemeCarried {
			carried = append(carried, f)
			continue
		}
		r, err := applyFile(inTree(f.Path), f, from, to, nil)
		if err != nil {
			return v, fmt.Errorf("apply path map to %s: %w", root, err)
		}
		v.add(r)
		if r.newID != nil {
			newIDs[f.Path] = ids{r.oldID, r.newID}
		}
	}
	for _, f := range carried {
		src, ok := newIDs[f.BuildID.From]
		if !ok {
			v.fail(fmt.Sprintf("%s: its build-id comes from %s, which got no new id", f.Path, f.BuildID.From))
			continue
		}
		carry := func(old []byte) ([]byte, string) {
			if !bytes.Equal(old, src.old) {
				return nil, fmt.Sprintf("build-id %x is no longer the one of %s (%x)", old, f.BuildID.From, src.old)
			}
			return src.new, ""
		}
		r, err := applyFile(inTree(f.Path), f, from, to, carry)
		if err != nil {
			return v, fmt.Errorf("apply path map to %s: %w", root, err)
		}
		v.add(r)
	}

	replace := func(s string) string {
		for name := range from {
			s = strings.ReplaceAll(s, from[name], to[name])
		}
		return s
	}
	for _, rel := range m.Links {
		p := inTree(rel)
		target, err := os.Readlink(p)
		if err != nil {
			return v, fmt.Errorf("apply path map: %w", err)
		}
		if nt := replace(target); nt != target {
			if err := os.Remove(p); err != nil {
				return v, fmt.Errorf("apply path map: %w", err)
			}
			if err := os.Symlink(nt, p); err != nil {
				return v, fmt.Errorf("apply path map: %w", err)
			}
			v.Files++
		}
	}
	// Deepest first, so a directory is renamed after its children.
	renames := append([]string(nil), m.Renames...)
	sort.Slice(renames, func(i, j int) bool { return strings.Count(renames[i], "/") > strings.Count(renames[j], "/") })
	for _, rel := range renames {
		p := inTree(rel)
		if nb := replace(filepath.Base(p)); nb != filepath.Base(p) {
			if err := rename(p, filepath.Join(filepath.Dir(p), nb)); err != nil {
				return v, fmt.Errorf("apply path map: rename: %w", err)
			}
			v.Files++
		}
	}
	for _, u := range v.Unexplained {
		v.Why = append(v.Why, u.String())
	}
	v.Exact = len(v.Why) == 0
	return v, nil
}

// fail records why the rewrite itself is not exact.
func (v *Verdict) fail(why ...string) {
	v.Failed = append(v.Failed, why...)
	v.Why = append(v.Why, why...)
}

// fileResult is what rewriting one file gave.
type fileResult struct {
	oldID, newID []byte // the build-id before and after (nil without one)
	why          []string
	// unclear is a file's bytes whose new value the map cannot name: a
	// fragment that fits several hash positions giving different bytes
	// (in compressed data such "fragments" are chance matches).
	unclear *Unexplained
	written bool
}

// add records what rewriting one file gave.
func (v *Verdict) add(r fileResult) {
	v.fail(r.why...)
	if r.written {
		v.Files++
	}
	if r.unclear == nil {
		return
	}
	for i := range v.Unexplained {
		if u := &v.Unexplained[i]; u.Path == r.unclear.Path {
			u.Why += "; " + r.unclear.Why
			u.merge(r.unclear.Strays)
			return
		}
	}
	v.Unexplained = append(v.Unexplained, *r.unclear)
}

// applyFile rewrites one file. carry, for a stripped file, gives the new
// id from the old one instead of recomputing it.
func applyFile(path string, f FileMap, from, to map[string]string, carry func(old []byte) ([]byte, string)) (res fileResult, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return res, err
	}
	inexact := func(format string, args ...any) {
		res.why = append(res.why, f.Path+": "+fmt.Sprintf(format, args...))
	}
	orig := bytes.Clone(data)
	var unclear []int64
	for _, r := range f.Runs {
		hf, ht := from[r.Output], to[r.Output]
		if r.K < 0 || r.K+r.Len > len(hf) || r.Off < 0 || r.Off+int64(r.Len) > int64(len(data)) {
			inexact("map run at offset %d does not fit the file or hash", r.Off)
			return res, nil
		}
		if !bytes.Equal(data[r.Off:r.Off+int64(r.Len)], []byte(hf[r.K:r.K+r.Len])) {
			inexact("does not hold the learned hash bytes at offset %d (the tree is not the one the map was learned on)", r.Off)
			return res, nil
		}
		copy(data[r.Off:], ht[r.K:r.K+r.Len])
		for _, alt := range r.Alt {
			if to[alt.Output][alt.K:alt.K+r.Len] != ht[r.K:r.K+r.Len] {
				unclear = append(unclear, r.Off)
				break
			}
		}
	}
	if len(unclear) > 0 {
		res.unclear = unclearBytes(f.Path, orig, unclear)
	}
	if bid := f.BuildID; bid != nil {
		oldIm, err := buildid.ParseELF(orig)
		if err != nil || int64(oldIm.DescOff) != bid.Off || oldIm.DescSize != bid.Size {
			inexact("build-id note is not where the map says")
			return res, nil
		}
		res.oldID = bytes.Clone(oldIm.BuildID())
		switch {
		case carry != nil:
			id, reason := carry(res.oldID)
			if reason != "" {
				inexact("%s", reason)
			}
			res.newID = id
		case bid.Scheme == "":
			// learnmap.Learn found no scheme and said so in the map.
		case !oldIm.Verifies(bid.Scheme):
			// Never trust an algorithm that does not reproduce the id
			// the linker wrote.
			inexact("build-id %x is not reproduced by %s", res.oldID, bid.Scheme)
		default:
			im, err := buildid.ParseELF(data)
			if err == nil {
				res.newID, err = im.ComputeBuildID(bid.Scheme)
			}
			if err != nil {
				return res, fmt.Errorf("%s: %w", path, err)
			}
		}
		if res.newID != nil {
			copy(data[bid.Off:], res.newID)
		}
	}
	if !bytes.Equal(data, orig) {
		info, err := os.Lstat(path)
		if err != nil {
			return res, err
		}
		if err := writeKeepingMode(path, data, info); err != nil {
			return res, err
		}
		res.written = true
	}
	return res, nil
}

// unclearBytes describes bytes of a file whose new value is unknown.
func unclearBytes(rel string, data []byte, offs []int64) *Unexplained {
	u := &Unexplained{Path: rel, Why: fmt.Sprintf("%d fragment(s) fit several hash positions that give different new bytes, first at offset %d", len(offs), offs[0])}
	u.Bytes, u.Offsets = len(offs), offs[:min(len(offs), MaxOffsets)]
	if im, err := buildid.ParseELF(data); err == nil {
		u.IDCovers = im.DescSize > 0
		for _, off := range u.Offsets {
			u.AddSection(im.SectionAt(off))
		}
	}
	return u
}

func (m *Map) method() string {
	return fmt.Sprintf("learned path map (%d whole hashes, %d fragments, %d build-ids)", m.Stats.WholeHashes, m.Stats.Fragments, m.Stats.BuildIDs)
}

// sameOutput reports whether p is ref with another hash of the same length.
func sameOutput(p, ref string) bool {
	hp, hr := HashPart(p), HashPart(ref)
	return len(p) == len(ref) && len(hp) == len(hr) &&
		filepath.Dir(p) == filepath.Dir(ref) &&
		strings.TrimPrefix(filepath.Base(p), hp) == strings.TrimPrefix(filepath.Base(ref), hr)
}

// Learned rewrites with a map learned by learnmap.Learn. It implements
// Rewriter for the runner: old2new maps the paths the reused layers hold
// (the map's Paths, or paths an earlier rewrite gave them) to the current
// ones.
type Learned struct{ Map *Map }

// Rewrite implements Rewriter.
func (l Learned) Rewrite(root string, old2new map[string]string) (Verdict, error) {
	if l.Map == nil {
		return fallback(root, old2new, "no path map learned for these layers")
	}
	pathsB, pathsC := map[string]string{}, map[string]string{}
	used := map[string]bool{}
	for name, ref := range l.Map.Paths {
		old := ref
		if _, ok := old2new[ref]; !ok {
			for o := range old2new {
				if sameOutput(o, ref) {
					old = o
				}
			}
		}
		pathsB[name], pathsC[name] = old, old
		if n, ok := old2new[old]; ok {
			pathsC[name], used[old] = n, true
		}
	}
	for o := range old2new {
		if !used[o] {
			return fallback(root, old2new, "the path map was learned for other outputs than "+o)
		}
	}
	return l.Map.Apply(root, pathsB, pathsC)
}

// fallback substitutes whole hashes (never exact) and says why.
func fallback(root string, old2new map[string]string, why string) (Verdict, error) {
	v, err := Substitution{}.Rewrite(root, old2new)
	v.Exact = false
	v.Why = append([]string{"(map): " + why}, v.Why...)
	v.Failed = append([]string{"(map): " + why}, v.Failed...)
	return v, err
}

// rename moves a tree. Overlayfs without redirect_dir refuses to rename a
// directory that comes from a lower layer (EXDEV): it is copied instead,
// with modes, times and symlinks, and the original removed.
func rename(from, to string) error {
	err := os.Rename(from, to)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if out, err := exec.Command("cp", "-a", "--", from, to).CombinedOutput(); err != nil {
		os.RemoveAll(to)
		return fmt.Errorf("copying %s to %s: %v: %s", from, to, err, out)
	}
	return os.RemoveAll(from)
}

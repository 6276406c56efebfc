// Package rewrite makes a tree built with one set of output paths valid for
// another. The runner (and the learner, for its twins) calls it through
// Rewriter whenever it reuses layers that were built before an edit changed
// `$out`.
//
// Exact rewriting is learned: learnmap.Learn compares two builds made with
// different paths into a Map of every path-dependent byte, the type this
// package holds with its files' unexplained bytes and how they reached the
// outputs (Reach); Map.Apply (or Learned, as a Rewriter) sets those bytes
// for new paths and recomputes ELF build-ids (buildid). Provisional
// rewrites what a scan can see before a map exists; Substitution is the
// fallback for layers without a map. Neither claims exactness.
package rewrite

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Verdict says how far a rewritten tree can be trusted.
type Verdict struct {
	// Exact: the tree is byte-for-byte what a build with the new paths
	// gives. Only exact results may reach the Nix store.
	Exact bool `json:"exact"`
	// Method names the rewriting used.
	Method string `json:"method"`
	// Why explains an inexact verdict, one line per cause: Failed, then
	// Unexplained.
	Why []string `json:"why,omitempty"`
	// Failed says why the rewrite itself could not be done exactly (no
	// map, a tree that is not the one the map was learned on, ambiguous
	// fragments): such a tree is never trusted.
	Failed []string `json:"failed,omitempty"`
	// Unexplained are the bytes the map could not explain, left as they
	// are: the build is exact if they reach no output (the runner judges).
	Unexplained []Unexplained `json:"unexplained,omitempty"`
	// Files counts the files rewritten.
	Files int `json:"files"`
}

// Rewriter turns a tree built with old paths into one for new paths, in
// place (on a copy-on-write layer, so only touched files are copied up).
type Rewriter interface {
	Rewrite(root string, old2new map[string]string) (Verdict, error)
}

// Substitution replaces every occurrence of an old store path's hash by the
// new one, in file contents, symlink targets and file names. It cannot see
// hash fragments a compiler split off or recompute build-ids, so it never
// claims an exact result.
type Substitution struct{}

// eachChangedHash calls f with every old and new store path whose hash
// parts differ; a rewrite that keeps lengths needs hash parts of one length.
func eachChangedHash(old2new map[string]string, f func(old, new string)) error {
	for o, n := range old2new {
		ho, hn := HashPart(o), HashPart(n)
		if len(ho) != len(hn) {
			return fmt.Errorf("cannot rewrite %s to %s: hash parts differ in length", o, n)
		}
		if ho != hn {
			f(o, n)
		}
	}
	return nil
}

// Rewrite implements Rewriter.
func (Substitution) Rewrite(root string, old2new map[string]string) (Verdict, error) {
	why := "whole-hash substitution cannot see hash fragments or recompute build-ids"
	v := Verdict{Method: "hash substitution", Why: []string{why}, Failed: []string{why}}
	type pair struct{ old, new []byte }
	var pairs []pair
	if err := eachChangedHash(old2new, func(o, n string) { pairs = append(pairs, pair{[]byte(HashPart(o)), []byte(HashPart(n))}) }); err != nil {
		return v, err
	}
	if len(pairs) == 0 {
		v.Exact, v.Why, v.Failed = true, nil, nil
		return v, nil
	}
	replace := func(b []byte) ([]byte, bool) {
		changed := false
		for _, p := range pairs {
			if bytes.Contains(b, p.old) {
				b = bytes.ReplaceAll(b, p.old, p.new)
				changed = true
			}
		}
		return b, changed
	}
	name := func(s string) string { b, _ := replace([]byte(s)); return string(b) }
	files, err := rewriteTree(root, name, func(_ string, data []byte) ([]byte, error) {
		if nd, changed := replace(data); changed {
			return nd, nil
		}
		return nil, nil
	})
	v.Files += files
	return v, err
}

// rewriteTree rewrites a tree in place: symlink targets and entry names
// through name (deepest entries renamed first), regular files through
// contents (nil: unchanged), keeping modes and times. It returns how many
// files and links it wrote.
func rewriteTree(root string, name func(string) string, contents func(path string, data []byte) ([]byte, error)) (int, error) {
	files := 0
	var renames []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root && name(d.Name()) != d.Name() {
			renames = append(renames, path)
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if nt := name(target); nt != target {
				if err := os.Remove(path); err != nil {
					return err
				}
				if err := os.Symlink(nt, path); err != nil {
					return err
				}
				files++
			}
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			nd, err := contents(path, data)
			if err != nil || nd == nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if err := writeKeepingMode(path, nd, info); err != nil {
				return err
			}
			files++
		}
		return nil
	})
	if err != nil {
		return files, fmt.Errorf("rewrite %s: %w", root, err)
	}
	// Deepest first, so parents are renamed after their children.
	sort.Slice(renames, func(i, j int) bool { return len(renames[i]) > len(renames[j]) })
	for _, p := range renames {
		if err := rename(p, filepath.Join(filepath.Dir(p), name(filepath.Base(p)))); err != nil {
			return files, fmt.Errorf("rewrite file name %s: %w", p, err)
		}
	}
	return files, nil
}

// Text applies the same substitution to a string (e.g. a shell state).
func Text(s string, old2new map[string]string) string {
	for o, n := range old2new {
		s = strings.ReplaceAll(s, HashPart(o), HashPart(n))
	}
	return s
}

func writeKeepingMode(path string, data []byte, info fs.FileInfo) error {
	mode := info.Mode().Perm()
	if mode&0o200 == 0 {
		if err := os.Chmod(path, mode|0o200); err != nil {
			return err
		}
	}
	if err := os.WriteFile(path, data, mode|0o200); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	// Keep the modification time: make compares it, and a rewritten
	// config.status newer than its Makefile would make `make install`
	// regenerate the build system.
	return os.Chtimes(path, info.ModTime(), info.ModTime())
}

// HashPart returns the 32-character hash of a store path.
func HashPart(p string) string {
	base := filepath.Base(p)
	if i := strings.IndexByte(base, '-'); i > 0 {
		return base[:i]
	}
	return base
}

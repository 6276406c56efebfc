package rewrite

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Two real builds of a chain pair up only when their output hashes differ
// at every index (Pairable): a fragment made of characters both hashes
// share would not differ between them, so it would go unseen. With Nix's
// hashes that holds for about one pair in three. A third build whose
// hashes differ from the reference's wherever the first pair's agree sees
// those characters: if it finds nothing the first map lacks, the first map
// is complete.

// Covered says why builds with pathsA and pathsC together cannot make
// every character of pathsRef's hashes differ (nil when they can): at each
// index of each output, A's or C's hash differs from the reference's.
func Covered(pathsA, pathsC, pathsRef map[string]string) error {
	a, err := outputHashes(pathsA, pathsRef)
	if err != nil {
		return err
	}
	c, err := outputHashes(pathsC, pathsRef)
	if err != nil {
		return err
	}
	for i, o := range a { // both sorted by output name
		if c[i].name != o.name {
			return fmt.Errorf("the builds' outputs differ: %s and %s", o.name, c[i].name)
		}
		for k := range o.hashB {
			if o.hashA[k] == o.hashB[k] && c[i].hashA[k] == o.hashB[k] {
				return fmt.Errorf("hashes of output %s agree at index %d in both builds", o.name, k)
			}
		}
	}
	return nil
}

// Corroborate makes m, learned from a pair whose hashes agree at some
// indices (its only problems), usable when other, learned for the same
// reference tree from a build that differs where m's pair agrees
// (Covered), finds no byte, link, entry or unexplained file that m does
// not account for. It returns the corroborated copy of m; an error names
// the first thing other saw that m missed.
func Corroborate(m, other *Map, pathsA, pathsC map[string]string) (*Map, error) {
	if !maps.Equal(m.Paths, other.Paths) {
		return nil, errors.New("the maps are of trees built with other output paths")
	}
	if err := Covered(pathsA, pathsC, m.Paths); err != nil {
		return nil, err
	}
	outs, err := outputHashes(pathsA, m.Paths)
	if err != nil {
		return nil, err
	}
	blind := agreements(outs)
	for _, p := range m.Problems {
		if !slices.Contains(blind, p) {
			return nil, fmt.Errorf("the map has a problem a third build cannot lift: %s", p)
		}
	}
	mine := explainedBytes(m)
	for path, offs := range explainedBytes(other) {
		for off := range offs {
			if !mine[path][off] {
				return nil, fmt.Errorf("%s: byte %d depends on the output paths, seen only by the third build", path, off)
			}
		}
	}
	for _, l := range other.Links {
		if !slices.Contains(m.Links, l) {
			return nil, fmt.Errorf("%s: link target depends on the output paths, seen only by the third build", l)
		}
	}
	for _, r := range other.Renames {
		if !slices.Contains(m.Renames, r) {
			return nil, fmt.Errorf("%s: name depends on the output paths, seen only by the third build", r)
		}
	}
	accounted := map[string]bool{}
	for _, f := range m.Files {
		accounted[f.Path] = true
	}
	for _, u := range m.Unexplained {
		accounted[u.Path] = true
	}
	for _, u := range other.Unexplained {
		if !accounted[u.Path] {
			return nil, fmt.Errorf("%s: differs in the third build only (%s)", u.Path, u.Why)
		}
	}
	c := *m
	c.Problems = nil
	return &c, nil
}

// explainedBytes are the offsets of each file that m maps: its runs and
// build-id.
func explainedBytes(m *Map) map[string]map[int64]bool {
	out := map[string]map[int64]bool{}
	for _, f := range m.Files {
		offs := map[int64]bool{}
		for _, r := range f.Runs {
			for k := r.Off; k < r.Off+int64(r.Len); k++ {
				offs[k] = true
			}
		}
		if f.BuildID != nil {
			for k := f.BuildID.Off; k < f.BuildID.Off+int64(f.BuildID.Size); k++ {
				offs[k] = true
			}
		}
		out[f.Path] = offs
	}
	return out
}

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
	// Byte by byte, where the hashes come from: the third build must
	// explain every byte m explains, from the same hash position, except
	// where its own hashes agree with the reference's (there the pair
	// sees, and it cannot). So a constant next to a fragment, which
	// matches both of the pair's hashes where they agree, is caught.
	outsC, err := outputHashes(pathsC, m.Paths)
	if err != nil {
		return nil, err
	}
	mine, theirs := explainedBytes(m), explainedBytes(other)
	blindC := agreeingIndices(outsC)
	for path, offs := range mine {
		for off, at := range offs {
			seen, ok := theirs[path][off]
			switch {
			case ok && at.buildID != seen.buildID, ok && !at.buildID && !seen.has(at.primary):
				return nil, fmt.Errorf("%s: byte %d is explained otherwise by the third build", path, off)
			case !ok && (at.buildID || !blindC[at.primary]):
				return nil, fmt.Errorf("%s: byte %d is not explained by the third build", path, off)
			}
		}
	}
	for path, offs := range theirs {
		for off := range offs {
			if _, ok := mine[path][off]; !ok {
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
	// Bytes the third build cannot explain that m does not list as
	// unexplained (or lists at other offsets) depend on the path where the
	// pair agrees: a transformed character, an ordering.
	unexplained := map[string]Unexplained{}
	for _, u := range m.Unexplained {
		unexplained[u.Path] = u
	}
	for _, u := range other.Unexplained {
		mu, ok := unexplained[u.Path]
		if !ok {
			return nil, fmt.Errorf("%s: differs in the third build beyond the paths, not in the pair (%s)", u.Path, u.Why)
		}
		if len(mu.Offsets) == 0 {
			continue // the whole file counts as unexplained
		}
		if len(u.Offsets) == 0 {
			return nil, fmt.Errorf("%s: the third build cannot locate its unexplained bytes (%s)", u.Path, u.Why)
		}
		for _, off := range u.Offsets {
			if !slices.Contains(mu.Offsets, off) {
				return nil, fmt.Errorf("%s: byte %d differs in the third build beyond the paths, not in the pair", u.Path, off)
			}
		}
	}
	c := *m
	c.Problems = nil
	return &c, nil
}

// hashAt is where an explained byte comes from: a hash position (and its
// alternatives), or the build-id.
type hashAt struct {
	primary HashRef
	alt     []HashRef
	buildID bool
}

func (h hashAt) has(r HashRef) bool { return h.primary == r || slices.Contains(h.alt, r) }

// explainedBytes are the bytes of each file that m maps, with where they
// come from.
func explainedBytes(m *Map) map[string]map[int64]hashAt {
	out := map[string]map[int64]hashAt{}
	for _, f := range m.Files {
		offs := map[int64]hashAt{}
		for _, r := range f.Runs {
			for i := range int64(r.Len) {
				at := hashAt{primary: HashRef{Output: r.Output, K: r.K + int(i)}}
				for _, a := range r.Alt {
					at.alt = append(at.alt, HashRef{Output: a.Output, K: a.K + int(i)})
				}
				offs[r.Off+i] = at
			}
		}
		if f.BuildID != nil {
			for k := f.BuildID.Off; k < f.BuildID.Off+int64(f.BuildID.Size); k++ {
				offs[k] = hashAt{buildID: true}
			}
		}
		out[f.Path] = offs
	}
	return out
}

// agreeingIndices are the hash positions at which the two builds' hashes
// agree.
func agreeingIndices(outs []outputHash) map[HashRef]bool {
	at := map[HashRef]bool{}
	for _, o := range outs {
		for k := range o.hashA {
			if o.hashA[k] == o.hashB[k] {
				at[HashRef{Output: o.name, K: k}] = true
			}
		}
	}
	return at
}

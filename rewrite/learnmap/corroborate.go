package learnmap

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
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
func Corroborate(m, other *rewrite.Map, pathsA, pathsC map[string]string) (*rewrite.Map, error) {
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
	// Byte by byte, where the hashes come from. In a file the third build
	// compares byte by byte, a byte m explains must be explained by it from
	// the same hash position, unless it is blind there itself (a constant
	// beside a fragment matches both of the pair's hashes where they
	// agree); a byte only it explains (a fragment's first characters at
	// indices where the pair agrees) joins m's runs. In a file it cannot
	// compare, m's runs stand as a pair's do, but only where they hold no
	// character the pair agrees on outside a stretch it does not agree on,
	// and do not start right after such a character (the fragment may
	// begin there).
	outsC, err := outputHashes(pathsC, m.Paths)
	if err != nil {
		return nil, err
	}
	blindA, blindC := agreeingIndices(outs), agreeingIndices(outsC)
	theirs := explainedBytes(other)
	unaligned := map[string]bool{}
	for _, u := range other.Unexplained {
		if _, ok := theirs[u.Path]; !ok {
			unaligned[u.Path] = true
		}
	}
	files := slices.Clone(m.Files)
	for fi, f := range files {
		mine := map[int64]bool{}
		for _, r := range f.Runs {
			first, last := -1, -1 // the run's bytes at indices where the pair differs
			for i := range r.Len {
				if !blindA[rewrite.HashRef{Output: r.Output, K: r.K + i}] {
					if first < 0 {
						first = i
					}
					last = i
				}
			}
			if unaligned[f.Path] && r.K > 0 && blindA[rewrite.HashRef{Output: r.Output, K: r.K - 1}] {
				return nil, fmt.Errorf("%s: the run at byte %d may begin earlier, where the pair's hashes agree, and the third build cannot compare the file", f.Path, r.Off)
			}
			for i := range r.Len {
				off, at := r.Off+int64(i), rewrite.HashRef{Output: r.Output, K: r.K + i}
				mine[off] = true
				seen, ok := theirs[f.Path][off]
				switch {
				case ok && (seen.buildID || !seen.has(at)):
					return nil, fmt.Errorf("%s: byte %d is explained otherwise by the third build", f.Path, off)
				case ok:
				case unaligned[f.Path]:
					if blindA[at] && !(first < i && i < last) {
						return nil, fmt.Errorf("%s: byte %d is explained only where the pair's hashes agree, and the third build cannot compare the file", f.Path, off)
					}
				case !blindC[at]:
					return nil, fmt.Errorf("%s: byte %d is not explained by the third build", f.Path, off)
				}
			}
		}
		if f.BuildID != nil {
			for off := f.BuildID.Off; off < f.BuildID.Off+int64(f.BuildID.Size); off++ {
				mine[off] = true
				if seen, ok := theirs[f.Path][off]; !ok || !seen.buildID {
					return nil, fmt.Errorf("%s: the build-id is not confirmed by the third build", f.Path)
				}
			}
		}
		var more []rewrite.Run
		for off, at := range theirs[f.Path] {
			if mine[off] {
				continue
			}
			if at.buildID {
				return nil, fmt.Errorf("%s: a build-id only the third build sees", f.Path)
			}
			more = append(more, rewrite.Run{Off: off, Output: at.primary.Output, K: at.primary.K, Len: 1, Alt: at.alt})
		}
		if len(more) > 0 {
			files[fi].Runs = joinRuns(append(slices.Clone(f.Runs), more...))
		}
	}
	for path := range theirs {
		if !slices.ContainsFunc(files, func(f rewrite.FileMap) bool { return f.Path == path }) {
			return nil, fmt.Errorf("%s: depends on the output paths, seen only by the third build", path)
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
	c := *m
	c.Files = files
	c.Problems = nil
	c.Unexplained = mergeUnexplained(m.Unexplained, other.Unexplained)
	return &c, nil
}

// joinRuns sorts runs by offset and joins those that continue each other
// (the next byte, the next hash position, no alternatives).
func joinRuns(runs []rewrite.Run) []rewrite.Run {
	slices.SortFunc(runs, func(a, b rewrite.Run) int { return int(a.Off - b.Off) })
	var out []rewrite.Run
	for _, r := range runs {
		if n := len(out); n > 0 {
			p := &out[n-1]
			if p.Off+int64(p.Len) == r.Off && p.Output == r.Output && p.K+p.Len == r.K && len(p.Alt) == 0 && len(r.Alt) == 0 {
				p.Len += r.Len
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// mergeUnexplained adds to mine the bytes the third build cannot explain
// (theirs): where the pair agrees they may depend on the path in a way no
// hash shows (a transformed character, an ordering), and the two
// derivations may differ elsewhere (the stdenv's env-vars). Either way they
// are judged on the outputs of each resume, as the pair's own are. A file
// whose bytes one side cannot locate counts as unexplained whole.
func mergeUnexplained(mine, theirs []rewrite.Unexplained) []rewrite.Unexplained {
	out := slices.Clone(mine)
	at := map[string]int{}
	for i, u := range out {
		at[u.Path] = i
		out[i].Offsets = slices.Clone(u.Offsets)
	}
	for _, u := range theirs {
		i, ok := at[u.Path]
		if !ok {
			u.Cause, u.Learned = "", nil
			u.Why = "in a third build: " + u.Why
			if len(u.Offsets) > unexplained.FollowedOffsets {
				u.Offsets = nil
			}
			at[u.Path] = len(out)
			out = append(out, u)
			continue
		}
		mu := &out[i]
		if len(mu.Offsets) == 0 {
			continue
		}
		if len(u.Offsets) == 0 || len(mu.Offsets)+len(u.Offsets) > unexplained.FollowedOffsets {
			mu.Offsets = nil
			mu.Why += "; a third build differs elsewhere in it too"
			continue
		}
		for _, off := range u.Offsets {
			if !slices.Contains(mu.Offsets, off) {
				mu.Offsets = append(mu.Offsets, off)
			}
		}
		slices.Sort(mu.Offsets)
		mu.Learned = nil // the reach recorded was of fewer bytes
	}
	return out
}

// hashAt is where an explained byte comes from: a hash position (and its
// alternatives), or the build-id.
type hashAt struct {
	primary rewrite.HashRef
	alt     []rewrite.HashRef
	buildID bool
}

func (h hashAt) has(r rewrite.HashRef) bool { return h.primary == r || slices.Contains(h.alt, r) }

// explainedBytes are the bytes of each file that m maps, with where they
// come from.
func explainedBytes(m *rewrite.Map) map[string]map[int64]hashAt {
	out := map[string]map[int64]hashAt{}
	for _, f := range m.Files {
		offs := map[int64]hashAt{}
		for _, r := range f.Runs {
			for i := range int64(r.Len) {
				at := hashAt{primary: rewrite.HashRef{Output: r.Output, K: r.K + int(i)}}
				for _, a := range r.Alt {
					at.alt = append(at.alt, rewrite.HashRef{Output: a.Output, K: a.K + int(i)})
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
func agreeingIndices(outs []outputHash) map[rewrite.HashRef]bool {
	at := map[rewrite.HashRef]bool{}
	for _, o := range outs {
		for k := range o.hashA {
			if o.hashA[k] == o.hashB[k] {
				at[rewrite.HashRef{Output: o.name, K: k}] = true
			}
		}
	}
	return at
}

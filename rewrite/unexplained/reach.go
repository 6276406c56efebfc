// Package unexplained follows the bytes a path map cannot explain: into a
// build's outputs (Reaches: copied, inside a container, in an ELF section
// that survives, under a build-id computed over them) and against a rerun
// with the same paths (Nondeterministic: the build's own nondeterminism, not
// a path dependence). The learner (package learn) calls it on a learned
// chain's outputs, on a resume's, and on the files a rerun produced again;
// learnmap locates the bytes densely enough for it (NeedleLen,
// FollowedOffsets).
package unexplained

import (
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/buildid"
)

// NeedleLen is the length of the byte windows searched for in the
// outputs: long enough that a window around unexplained bytes appears by
// chance nowhere else.
const NeedleLen = 32

// Reaches judges, for every entry of us (same order), whether its bytes
// can reach one of the outputs. tree holds the files the entries name
// (the layers the phases after a reuse started from); resolve maps an
// entry's path to its path in tree; outputs maps output names to their
// directories in the finished build.
func Reaches(tree string, us []rewrite.Unexplained, resolve func(string) string, outputs map[string]string) ([]rewrite.Reach, error) {
	blobs, err := outputBlobs(outputs)
	if err != nil {
		return nil, err
	}
	reach := make([]rewrite.Reach, len(us))
	better := func(i int, r rewrite.Reach) {
		if r.Rule.Strength() > reach[i].Rule.Strength() || (r.Rule == reach[i].Rule && r.Copy && !reach[i].Copy) {
			reach[i] = r
		}
	}
	// The tree is a build's: an entry may be a symlink out of it, a FIFO
	// or a device, which root must neither follow nor open.
	root, err := os.OpenRoot(tree)
	if err != nil {
		return nil, fmt.Errorf("opening tree %s: %w", tree, err)
	}
	defer root.Close()
	idx := newNeedleIndex()
	whole := map[[32]byte][]int{}
	elfs := map[int]*buildid.Image{}
	for i, u := range us {
		x, err := treefile.Read(root, filepath.FromSlash(resolve(u.Path)), treefile.MaxCompared)
		if err != nil {
			// Not a regular file of the tree (only in the other build, a
			// directory, a symlink, a FIFO, a device) or too big to read
			// whole: nothing to follow.
			better(i, rewrite.Reach{Rule: rewrite.RuleUnsure, Detail: "not a file nixlayer can follow into the outputs (" + u.Why + ")"})
			continue
		}
		sum := sha256.Sum256(x)
		whole[sum] = append(whole[sum], i)
		for k, off := range u.Offsets {
			if k == FollowedOffsets {
				break
			}
			idx.add(x, off, i)
		}
		if len(u.Offsets) == 0 {
			better(i, rewrite.Reach{Rule: rewrite.RuleUnsure, Detail: "no byte positions to follow into the outputs (" + u.Why + ")"})
		}
		if buildid.IsELF(x) {
			if im, err := buildid.ParseELF(x); err == nil {
				elfs[i] = im
			}
		}
	}
	for _, b := range blobs {
		if b.data == nil { // unread: only its opaque mark counts
			for i := range us {
				better(i, rewrite.Reach{Rule: rewrite.RuleUnsure, Output: b.name, Detail: b.opaque + " payload nixlayer cannot look into"})
			}
			continue
		}
		for _, i := range whole[sha256.Sum256(b.data)] {
			better(i, rewrite.Reach{Rule: rewrite.RuleInstalled, Output: b.name, Detail: "a copy of it", Copy: true})
		}
		for _, hit := range idx.search(b.data) {
			better(hit.entry, rewrite.Reach{Rule: rewrite.RuleInstalled, Output: b.name, Detail: fmt.Sprintf("holds its bytes at offset %d", hit.at)})
		}
		if b.opaque != "" {
			for i := range us {
				better(i, rewrite.Reach{Rule: rewrite.RuleUnsure, Output: b.name, Detail: b.opaque + " payload nixlayer cannot look into"})
			}
		}
		if b.elf == nil {
			continue
		}
		for i, u := range us {
			x := elfs[i]
			if x == nil {
				continue
			}
			if id := x.BuildID(); u.IDCovers && len(id) > 0 && bytes.Equal(b.elf.BuildID(), id) {
				better(i, rewrite.Reach{Rule: rewrite.RuleBuildID, Output: b.name, Detail: fmt.Sprintf("carries build-id %x, computed over the unexplained bytes", id)})
			}
			for _, sec := range u.Sections {
				switch {
				case sec == "":
					better(i, rewrite.Reach{Rule: rewrite.RuleUnsure, Output: b.name, Detail: "bytes outside every ELF section, and the outputs hold ELF files"})
				case b.elf.HasContents(sec):
					better(i, rewrite.Reach{Rule: rewrite.RuleSection, Output: b.name, Detail: "section " + sec + " survives in it"})
				case strings.HasPrefix(sec, ".debug") && b.elf.HasContents(".gnu_debuglink"):
					better(i, rewrite.Reach{Rule: rewrite.RuleUnsure, Output: b.name, Detail: "its .gnu_debuglink checksum may cover " + sec})
				}
			}
		}
	}
	// Files named after a build-id (separate debug info) carry it too.
	for i, u := range us {
		if x := elfs[i]; x != nil && u.IDCovers && len(x.BuildID()) > 1 {
			id := hex.EncodeToString(x.BuildID())
			for _, b := range blobs {
				if strings.Contains(b.name, id[2:]) {
					better(i, rewrite.Reach{Rule: rewrite.RuleBuildID, Output: b.name, Detail: "named after build-id " + id + ", computed over the unexplained bytes"})
				}
			}
		}
	}
	return reach, nil
}

// blob is one output file's contents, or a member of a container in one.
type blob struct {
	name   string
	data   []byte
	elf    *buildid.Image
	opaque string // a compression nixlayer cannot read ("xz", "zstd")
}

// maxUnpacked bounds what one compressed output file may expand to.
const maxUnpacked = 1 << 30

// outputBlobs reads every regular file of the outputs, with the members of
// the containers it can open.
func outputBlobs(outputs map[string]string) ([]blob, error) {
	var blobs []blob
	// `out` first: among equally strong reasons, the main output names one.
	names := slices.Sorted(maps.Keys(outputs))
	sort.SliceStable(names, func(i, j int) bool { return names[i] == "out" && names[j] != "out" })
	for _, name := range names {
		dir := outputs[name]
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("reading output %s: %w", name, err)
		}
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			data, err := treefile.Read(root, rel, treefile.MaxCompared)
			if errors.Is(err, treefile.ErrTooBig) {
				// Unread, it may carry any entry's bytes.
				blobs = append(blobs, blob{name: name + "/" + filepath.ToSlash(rel), opaque: fmt.Sprintf("an unread (over %d MiB)", treefile.MaxCompared>>20)})
				return nil
			}
			if err != nil {
				return err
			}
			blobs = appendBlob(blobs, name+"/"+filepath.ToSlash(rel), data, 0)
			return nil
		})
		root.Close()
		if err != nil {
			return nil, fmt.Errorf("reading output %s: %w", name, err)
		}
	}
	return blobs, nil
}

func appendBlob(blobs []blob, name string, data []byte, depth int) []blob {
	b := blob{name: name, data: data}
	if buildid.IsELF(data) {
		if im, err := buildid.ParseELF(data); err == nil {
			b.elf = im
		}
	}
	blobs = append(blobs, b)
	if depth > 2 { // a container in a container in a container: enough
		return blobs
	}
	unpacked := func(kind string, r io.Reader, err error) []blob {
		if err != nil {
			blobs[len(blobs)-1].opaque = kind + " (unreadable)"
			return blobs
		}
		inner, err := io.ReadAll(io.LimitReader(r, maxUnpacked))
		if err != nil {
			blobs[len(blobs)-1].opaque = kind + " (unreadable)"
			return blobs
		}
		return appendBlob(blobs, name+" ("+kind+" contents)", inner, depth+1)
	}
	switch format := rewrite.FormatOf(data); format {
	case rewrite.FormatGzip:
		r, err := gzip.NewReader(bytes.NewReader(data))
		return unpacked(string(format), r, err)
	case rewrite.FormatBzip2:
		return unpacked(string(format), bzip2.NewReader(bytes.NewReader(data)), nil)
	case rewrite.FormatZip:
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			blobs[len(blobs)-1].opaque = "zip (unreadable)"
			return blobs
		}
		for _, f := range zr.File {
			rc, err := f.Open()
			blobs = unpacked("zip member "+f.Name, rc, err)
			if rc != nil {
				rc.Close()
			}
		}
	case rewrite.FormatAr:
		for _, m := range arMembers(data) {
			blobs = appendBlob(blobs, name+" (member "+m.name+")", m.data, depth+1)
		}
	case rewrite.FormatXZ, rewrite.FormatZstd:
		blobs[len(blobs)-1].opaque = string(format)
	}
	return blobs
}

type arMember struct {
	name string
	data []byte
}

// arMembers splits a Unix ar archive (static libraries) into its members.
func arMembers(data []byte) []arMember {
	var ms []arMember
	for off := 8; off+60 <= len(data); {
		h := data[off : off+60]
		size, err := strconv.Atoi(strings.TrimSpace(string(h[48:58])))
		if err != nil || size < 0 || off+60+size > len(data) {
			break
		}
		ms = append(ms, arMember{name: strings.TrimRight(strings.TrimSpace(string(h[:16])), "/"), data: data[off+60 : off+60+size]})
		off += 60 + size + size%2
	}
	return ms
}

// needleIndex finds windows of unexplained files in output bytes with a
// rolling hash, in one pass over each output.
type needleIndex struct {
	byHash map[uint64][]needle
	pow    uint64 // base^(needleLen-1)
}

type needle struct {
	window []byte
	entry  int
}

type needleHit struct {
	entry int
	at    int
}

const rollBase = 1099511628211

func newNeedleIndex() *needleIndex {
	ix := &needleIndex{byHash: map[uint64][]needle{}, pow: 1}
	for i := 0; i < NeedleLen-1; i++ {
		ix.pow *= rollBase
	}
	return ix
}

// add registers the window of x around off. Windows of few distinct bytes
// (zero padding, repeated fill) would match unrelated data and are left out.
func (ix *needleIndex) add(x []byte, off int64, entry int) {
	if len(x) < NeedleLen {
		return
	}
	start := min(max(int(off)-NeedleLen/2, 0), len(x)-NeedleLen)
	w := x[start : start+NeedleLen]
	distinct := map[byte]bool{}
	for _, c := range w {
		distinct[c] = true
	}
	if len(distinct) < 8 {
		return
	}
	var h uint64
	for _, c := range w {
		h = h*rollBase + uint64(c)
	}
	for _, n := range ix.byHash[h] {
		if n.entry == entry && bytes.Equal(n.window, w) {
			return
		}
	}
	ix.byHash[h] = append(ix.byHash[h], needle{window: w, entry: entry})
}

// search returns the first place each entry's windows occur in data.
func (ix *needleIndex) search(data []byte) []needleHit {
	if len(ix.byHash) == 0 || len(data) < NeedleLen {
		return nil
	}
	var hits []needleHit
	found := map[int]bool{}
	var h uint64
	for i := 0; i < NeedleLen; i++ {
		h = h*rollBase + uint64(data[i])
	}
	for at := 0; ; at++ {
		if ns, ok := ix.byHash[h]; ok {
			for _, n := range ns {
				if !found[n.entry] && bytes.Equal(n.window, data[at:at+NeedleLen]) {
					found[n.entry] = true
					hits = append(hits, needleHit{entry: n.entry, at: at})
				}
			}
		}
		if at+NeedleLen >= len(data) {
			break
		}
		h = (h-uint64(data[at])*ix.pow)*rollBase + uint64(data[at+NeedleLen])
	}
	return hits
}

// Nondeterministic reports whether a file's unexplained differences
// between build A (a) and build B (b) are the build's own
// nondeterminism: every cluster of them changes in a2, a rerun of the same
// phase with A's paths, whereas bytes that depend on the paths come out the
// same. fm is the file's learned map (nil when it has none).
func Nondeterministic(a, b, a2 []byte, fm *rewrite.FileMap) bool {
	if len(a) != len(b) || len(a2) != len(a) {
		return false
	}
	explained := make([]bool, len(a))
	if fm != nil {
		for _, r := range fm.Runs {
			for k := r.Off; k < r.Off+int64(r.Len) && k < int64(len(a)); k++ {
				explained[k] = true
			}
		}
		if fm.BuildID != nil {
			for k := fm.BuildID.Off; k < fm.BuildID.Off+int64(fm.BuildID.Size) && k < int64(len(a)); k++ {
				explained[k] = true
			}
		}
	}
	// A cluster is unexplained bytes at most clusterGap apart: one random
	// name, one time stamp. It is nondeterministic if the rerun changes
	// any byte of it (a single random character can repeat by chance).
	const clusterGap = 8
	clusters, changed := 0, true
	last := -clusterGap - 1
	for i := range a {
		if a[i] == b[i] || explained[i] {
			continue
		}
		if i-last > clusterGap {
			if !changed {
				return false
			}
			clusters, changed = clusters+1, false
		}
		last = i
		for k := max(i-clusterGap, 0); k <= min(i+clusterGap, len(a)-1) && !changed; k++ {
			changed = a2[k] != a[k]
		}
	}
	return clusters > 0 && changed
}

// FollowedOffsets is how many of a file's unexplained offsets the judge
// follows into the outputs.
const FollowedOffsets = 16

package rewrite

import (
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
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
)

// Rule names what decided whether a file's unexplained bytes reach an
// output. A resume whose unexplained bytes reach no output is exact: its
// outputs are what a clean build with the new paths gives. The rules here
// say how bytes reach; runner adds those of its verdict on a whole build.
type Rule string

// The rules by which unexplained bytes reach an output.
const (
	// RuleInstalled: the file, or a piece of it holding the bytes, is in
	// an output (copied, or inside a gzip, bzip2, zip or ar container).
	RuleInstalled Rule = "installed-as-is"
	// RuleSection: an ELF section holding the bytes survives in an
	// installed ELF file (e.g. debug info that was not stripped).
	RuleSection Rule = "section-survives"
	// RuleBuildID: the file's build-id is computed over the bytes, and an
	// output file carries that id or is named after it.
	RuleBuildID Rule = "build-id"
	// RuleUnsure: nothing tells where the bytes go (no byte positions, an
	// output that cannot be looked into, bytes outside every ELF section):
	// counted as reaching.
	RuleUnsure Rule = "unsure"
)

// Strength orders the rules when several apply: the higher, the more
// direct the evidence that the bytes reach an output; 0 for a rule that
// is not one of these. A build-id comes first: it makes even the stripped
// main program wrong, which a copy of the debug info in a `debug` output
// does not say.
func (r Rule) Strength() int {
	switch r {
	case RuleBuildID:
		return 4
	case RuleInstalled:
		return 3
	case RuleSection:
		return 2
	case RuleUnsure:
		return 1
	}
	return 0
}

// Reach says whether, and how, one file's unexplained bytes reach the
// outputs.
type Reach struct {
	// Rule is one of the Rule… constants, "" when nothing reaches.
	Rule Rule `json:"rule,omitempty"`
	// Output is the output file that carries them: output name and path
	// inside it ("out/bin/hello").
	Output string `json:"output,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Copy: the output file is a copy of the whole file.
	Copy bool `json:"copy,omitempty"`
}

// needleLen is the length of the byte windows searched for in the
// outputs: long enough that a window around unexplained bytes appears by
// chance nowhere else.
const needleLen = 32

// Reaches judges, for every entry of us (same order), whether its bytes
// can reach one of the outputs. tree holds the files the entries name
// (the layers the phases after a reuse started from); resolve maps an
// entry's path to its path in tree; outputs maps output names to their
// directories in the finished build.
func Reaches(tree string, us []Unexplained, resolve func(string) string, outputs map[string]string) ([]Reach, error) {
	blobs, err := outputBlobs(outputs)
	if err != nil {
		return nil, err
	}
	reach := make([]Reach, len(us))
	better := func(i int, r Reach) {
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
	elfs := map[int]*elfImage{}
	for i, u := range us {
		x, err := treefile.Read(root, filepath.FromSlash(resolve(u.Path)), treefile.MaxCompared)
		if err != nil {
			// Not a regular file of the tree (only in the other build, a
			// directory, a symlink, a FIFO, a device) or too big to read
			// whole: nothing to follow.
			better(i, Reach{Rule: RuleUnsure, Detail: "not a file nixlayer can follow into the outputs (" + u.Why + ")"})
			continue
		}
		sum := sha256.Sum256(x)
		whole[sum] = append(whole[sum], i)
		for k, off := range u.Offsets {
			if k == followedOffsets {
				break
			}
			idx.add(x, off, i)
		}
		if len(u.Offsets) == 0 {
			better(i, Reach{Rule: RuleUnsure, Detail: "no byte positions to follow into the outputs (" + u.Why + ")"})
		}
		if isELF(x) {
			if im, err := parseELF(x); err == nil {
				elfs[i] = im
			}
		}
	}
	for _, b := range blobs {
		if b.data == nil { // unread: only its opaque mark counts
			for i := range us {
				better(i, Reach{Rule: RuleUnsure, Output: b.name, Detail: b.opaque + " payload nixlayer cannot look into"})
			}
			continue
		}
		for _, i := range whole[sha256.Sum256(b.data)] {
			better(i, Reach{Rule: RuleInstalled, Output: b.name, Detail: "a copy of it", Copy: true})
		}
		for _, hit := range idx.search(b.data) {
			better(hit.entry, Reach{Rule: RuleInstalled, Output: b.name, Detail: fmt.Sprintf("holds its bytes at offset %d", hit.at)})
		}
		if b.opaque != "" {
			for i := range us {
				better(i, Reach{Rule: RuleUnsure, Output: b.name, Detail: b.opaque + " payload nixlayer cannot look into"})
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
			if id := x.buildID(); u.IDCovers && len(id) > 0 && bytes.Equal(b.elf.buildID(), id) {
				better(i, Reach{Rule: RuleBuildID, Output: b.name, Detail: fmt.Sprintf("carries build-id %x, computed over the unexplained bytes", id)})
			}
			for _, sec := range u.Sections {
				switch {
				case sec == "":
					better(i, Reach{Rule: RuleUnsure, Output: b.name, Detail: "bytes outside every ELF section, and the outputs hold ELF files"})
				case b.elf.hasContents(sec):
					better(i, Reach{Rule: RuleSection, Output: b.name, Detail: "section " + sec + " survives in it"})
				case strings.HasPrefix(sec, ".debug") && b.elf.hasContents(".gnu_debuglink"):
					better(i, Reach{Rule: RuleUnsure, Output: b.name, Detail: "its .gnu_debuglink checksum may cover " + sec})
				}
			}
		}
	}
	// Files named after a build-id (separate debug info) carry it too.
	for i, u := range us {
		if x := elfs[i]; x != nil && u.IDCovers && len(x.buildID()) > 1 {
			id := hex.EncodeToString(x.buildID())
			for _, b := range blobs {
				if strings.Contains(b.name, id[2:]) {
					better(i, Reach{Rule: RuleBuildID, Output: b.name, Detail: "named after build-id " + id + ", computed over the unexplained bytes"})
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
	elf    *elfImage
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
	if isELF(data) {
		if im, err := parseELF(data); err == nil {
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
	switch format := FormatOf(data); format {
	case FormatGzip:
		r, err := gzip.NewReader(bytes.NewReader(data))
		return unpacked(string(format), r, err)
	case FormatBzip2:
		return unpacked(string(format), bzip2.NewReader(bytes.NewReader(data)), nil)
	case FormatZip:
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
	case FormatAr:
		for _, m := range arMembers(data) {
			blobs = appendBlob(blobs, name+" (member "+m.name+")", m.data, depth+1)
		}
	case FormatXZ, FormatZstd:
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

// hasContents reports whether the file has a section of that name with
// bytes in the file.
func (im *elfImage) hasContents(name string) bool {
	for _, s := range im.sections {
		if s.name == name && s.typ != elf.SHT_NOBITS && s.size > 0 {
			return true
		}
	}
	return false
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
	for i := 0; i < needleLen-1; i++ {
		ix.pow *= rollBase
	}
	return ix
}

// add registers the window of x around off. Windows of few distinct bytes
// (zero padding, repeated fill) would match unrelated data and are left out.
func (ix *needleIndex) add(x []byte, off int64, entry int) {
	if len(x) < needleLen {
		return
	}
	start := min(max(int(off)-needleLen/2, 0), len(x)-needleLen)
	w := x[start : start+needleLen]
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
	if len(ix.byHash) == 0 || len(data) < needleLen {
		return nil
	}
	var hits []needleHit
	found := map[int]bool{}
	var h uint64
	for i := 0; i < needleLen; i++ {
		h = h*rollBase + uint64(data[i])
	}
	for at := 0; ; at++ {
		if ns, ok := ix.byHash[h]; ok {
			for _, n := range ns {
				if !found[n.entry] && bytes.Equal(n.window, data[at:at+needleLen]) {
					found[n.entry] = true
					hits = append(hits, needleHit{entry: n.entry, at: at})
				}
			}
		}
		if at+needleLen >= len(data) {
			break
		}
		h = (h-uint64(data[at])*ix.pow)*rollBase + uint64(data[at+needleLen])
	}
	return hits
}

// Nondeterministic reports whether a file's unexplained differences
// between build A (a) and build B (b) are the build's own
// nondeterminism: every cluster of them changes in a2, a rerun of the same
// phase with A's paths, whereas bytes that depend on the paths come out the
// same. fm is the file's learned map (nil when it has none).
func Nondeterministic(a, b, a2 []byte, fm *FileMap) bool {
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

// followedOffsets is how many of a file's unexplained offsets the judge
// follows into the outputs.
const followedOffsets = 16

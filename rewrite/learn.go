package rewrite

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/internal/treefile"
)

// Map records every byte of a tree that depends on the output paths,
// learned by comparing two builds of the same phases made with different
// paths. Offsets and file names refer to the reference tree, built with
// Paths. It is plain data so the runner can store it with a layer chain.
type Map struct {
	// Paths are the output paths (output name → store path) the
	// reference tree was built with.
	Paths map[string]string `json:"paths"`
	// Files lists the files whose contents depend on the paths.
	Files []FileMap `json:"files,omitempty"`
	// Links are symlinks whose targets hold an output hash.
	Links []string `json:"links,omitempty"`
	// Renames are entries whose names hold an output hash.
	Renames []string `json:"renames,omitempty"`
	// Unexplained lists the files whose differences no output hash
	// explains: a byte rewrite leaves them as they are. Whether that makes
	// a resume inexact depends on whether they can reach an output
	// (Reaches) and on their cause.
	Unexplained []Unexplained `json:"unexplained,omitempty"`
	// Problems make the map unusable for an exact rewrite whatever the
	// outputs hold (e.g. the two builds' hashes agree at an index).
	Problems []string `json:"problems,omitempty"`
	Stats    Stats    `json:"stats"`
}

// Cause is why a file's bytes are unexplained, found by running the
// producing phase again with the same output paths.
type Cause string

const (
	// CauseNondeterministic: the bytes change in a rerun with the same
	// paths too. They are the build's own nondeterminism: the reused layer
	// is one valid outcome of its phase, so they make nothing inexact.
	CauseNondeterministic Cause = "nondeterministic"
	// CausePath: a rerun with the same paths reproduces them: they depend
	// on the output paths in a way no byte map follows.
	CausePath Cause = "path"
)

// Unexplained is one file whose differences between the two builds no
// output hash explains.
type Unexplained struct {
	// Path is named as in Map.Files.
	Path string `json:"path"`
	Why  string `json:"why"`
	Strays
	// Cause is CauseNondeterministic, CausePath, or "" when not checked.
	Cause Cause `json:"cause,omitempty"`
	// Learned is how the bytes reached the outputs of the last build
	// judged on them (the learned chain's own, or a resume's; nil when
	// none was): a prediction for the next resume, which is judged on its
	// own outputs.
	Learned *Reach `json:"learned,omitempty"`
}

func (u Unexplained) String() string { return u.Path + ": " + u.Why }

// Strays are where a file's unexplained bytes lie, as far as they could
// be located.
type Strays struct {
	// Offsets are the first differing bytes (at most maxOffsets); empty
	// when the file cannot be compared byte by byte (sizes or types differ,
	// present in one build only).
	Offsets []int64 `json:"offsets,omitempty"`
	// Bytes counts the differing bytes when they could be counted.
	Bytes int `json:"bytes,omitempty"`
	// Sections are the ELF sections holding them ("" for bytes outside
	// every section, e.g. in headers).
	Sections []string `json:"sections,omitempty"`
	// IDCovers: the file's own build-id is computed over them, so the id
	// is wrong too, in this file and in every copy that carries it.
	IDCovers bool `json:"idCovers,omitempty"`
}

// addOffset records a differing byte, while fewer than maxOffsets are.
func (s *Strays) addOffset(off int64) {
	if len(s.Offsets) < maxOffsets {
		s.Offsets = append(s.Offsets, off)
	}
}

// addSection records a section holding differing bytes, once.
func (s *Strays) addSection(sec string) {
	if !slices.Contains(s.Sections, sec) {
		s.Sections = append(s.Sections, sec)
	}
}

// merge adds what another look at the same file found.
func (s *Strays) merge(o Strays) {
	s.Bytes += o.Bytes
	s.IDCovers = s.IDCovers || o.IDCovers
	for _, off := range o.Offsets {
		s.addOffset(off)
	}
	for _, sec := range o.Sections {
		s.addSection(sec)
	}
}

// clone is a copy of s that adding to leaves s as it is.
func (s Strays) clone() Strays {
	s.Offsets, s.Sections = slices.Clone(s.Offsets), slices.Clone(s.Sections)
	return s
}

// maxOffsets bounds the offsets kept per file: enough to find the bytes
// again in the outputs, small enough for maps of thousands of objects.
const maxOffsets = 32

// FileMap is the path-dependent bytes of one file.
type FileMap struct {
	// Path is slash-separated, relative to the tree root, named as in
	// the reference tree.
	Path    string   `json:"path"`
	Runs    []Run    `json:"runs,omitempty"`
	BuildID *BuildID `json:"buildId,omitempty"`
}

// Run is Len consecutive bytes at Off that hold the characters K … K+Len-1
// of an output's hash: a whole hash when Len is the hash length, else a
// fragment a compiler split off.
type Run struct {
	Off    int64  `json:"off"`
	Output string `json:"output"`
	K      int    `json:"k"`
	Len    int    `json:"len"`
	// Alt lists other hash positions that explain the bytes equally well;
	// a rewrite is exact only if they all give the same new bytes.
	Alt []HashRef `json:"alt,omitempty"`
}

// HashRef names a position in an output's hash.
type HashRef struct {
	Output string `json:"output"`
	K      int    `json:"k"`
}

// BuildID is an ELF build-id note that must be recomputed after a rewrite.
type BuildID struct {
	Off  int64 `json:"off"`
	Size int   `json:"size"`
	// Scheme is the algorithm that reproduced the id in the reference
	// tree, or "carried" for a stripped file that takes the new id of
	// From, its unstripped linker output.
	Scheme string `json:"scheme"`
	From   string `json:"from,omitempty"`
}

// Stats are the figures of a Learn, for reports and benchmarks.
type Stats struct {
	FilesCompared int   `json:"filesCompared"`
	BytesCompared int64 `json:"bytesCompared"`
	WholeHashes   int   `json:"wholeHashes"`
	Fragments     int   `json:"fragments"`
	BuildIDs      int   `json:"buildIds"`
}

// Exact reports whether rewrites with this map can be byte-identical.
func (m *Map) Exact() bool { return len(m.Unexplained) == 0 && len(m.Problems) == 0 }

// PathIn names a path of the map (reference tree names) in a tree built
// with paths (output name → store path): the output hashes in file names
// are the tree's.
func (m *Map) PathIn(rel string, paths map[string]string) string {
	for name, ref := range m.Paths {
		if p := paths[name]; p != "" {
			rel = strings.ReplaceAll(rel, hashPart(ref), hashPart(p))
		}
	}
	return rel
}

// Reasons lists, one line per file, what makes a rewrite with this map
// inexact before any output is looked at.
func (m *Map) Reasons() []string {
	why := append([]string(nil), m.Problems...)
	for _, u := range m.Unexplained {
		why = append(why, u.String())
	}
	return why
}

// outputHash is what the classifier knows about one output: its full paths
// in both builds (neighbours around a fragment are matched against them)
// and where the hash sits in them.
type outputHash struct {
	name         string
	pathA, pathB string
	hashA, hashB string
	at           int // index of the hash in the paths
}

func outputHashes(pathsA, pathsB map[string]string) ([]outputHash, error) {
	var outs []outputHash
	for name, pa := range pathsA {
		pb, ok := pathsB[name]
		if !ok {
			return nil, fmt.Errorf("output %s has a path in build A only", name)
		}
		ha, hb := hashPart(pa), hashPart(pb)
		at := len(pa) - len(filepath.Base(pa))
		if len(pa) != len(pb) || len(ha) != len(hb) || pa[:at] != pb[:at] || pa[at+len(ha):] != pb[at+len(hb):] {
			return nil, fmt.Errorf("output %s: %s and %s differ beyond their hashes", name, pa, pb)
		}
		outs = append(outs, outputHash{name: name, pathA: pa, pathB: pb, hashA: ha, hashB: hb, at: at})
	}
	if len(outs) != len(pathsB) {
		return nil, fmt.Errorf("build B has outputs build A lacks")
	}
	sort.Slice(outs, func(i, j int) bool { return outs[i].name < outs[j].name })
	return outs, nil
}

// agreements names the outputs whose two hashes agree at an index: a
// fragment holding that character would not differ between the builds, so
// it would stay unseen.
func agreements(outs []outputHash) []string {
	var problems []string
	for _, o := range outs {
		for k := range o.hashA {
			if o.hashA[k] == o.hashB[k] {
				problems = append(problems, fmt.Sprintf("(map): hashes of output %s agree at index %d; use SyntheticPath for the second build", o.name, k))
				break
			}
		}
	}
	return problems
}

// Pairable says why two builds made with pathsA and pathsB cannot teach an
// exact map (nil when they can): Learn needs paths of the same shape whose
// hashes differ at every index, as SyntheticPath makes them. Two real
// builds of a chain (a rebuild with new output paths) qualify when Nix's
// hashes happen to.
func Pairable(pathsA, pathsB map[string]string) error {
	outs, err := outputHashes(pathsA, pathsB)
	if err != nil {
		return err
	}
	if problems := agreements(outs); len(problems) > 0 {
		return errors.New(strings.TrimPrefix(problems[0], "(map): "))
	}
	return nil
}

// Learn compares trees A and B, built with pathsA and pathsB (output name
// → store path, same lengths), and maps every byte of B that depends on
// the paths. Entries whose names hold a hash are paired by substituting it.
func Learn(treeA, treeB string, pathsA, pathsB map[string]string) (*Map, error) {
	outs, err := outputHashes(pathsA, pathsB)
	if err != nil {
		return nil, fmt.Errorf("learn path map: %w", err)
	}
	m := &Map{Paths: pathsB, Problems: agreements(outs)}
	c := newClassifier(outs)
	toA := func(rel string) string {
		for _, o := range outs {
			rel = strings.ReplaceAll(rel, o.hashB, o.hashA)
		}
		return rel
	}
	hasHashB := func(s string) bool {
		for _, o := range outs {
			if strings.Contains(s, o.hashB) {
				return true
			}
		}
		return false
	}
	// Both trees are builds': root must neither follow a symlink out of
	// them nor open a FIFO or a device in them.
	rootA, err := os.OpenRoot(treeA)
	if err != nil {
		return nil, fmt.Errorf("learn path map: %w", err)
	}
	defer rootA.Close()
	rootB, err := os.OpenRoot(treeB)
	if err != nil {
		return nil, fmt.Errorf("learn path map: %w", err)
	}
	defer rootB.Close()
	seenA := map[string]bool{}
	unexplained := func(rel, why string) { m.Unexplained = append(m.Unexplained, Unexplained{Path: rel, Why: why}) }
	var elfs []*learnedELF // for pairing stripped files with their linker output
	err = walkBelow(treeB, func(_, rel string, d fs.DirEntry) error {
		relA := toA(rel)
		seenA[relA] = true
		if hasHashB(d.Name()) {
			m.Renames = append(m.Renames, rel)
		}
		nameA, nameB := filepath.FromSlash(relA), filepath.FromSlash(rel)
		infoA, err := rootA.Lstat(nameA)
		if err != nil {
			unexplained(rel, "only in tree B")
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if infoA.Mode().Type() != d.Type() {
			unexplained(rel, "file type differs between the builds")
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			ta, tb, err := readBoth((*os.Root).Readlink, rootA, nameA, rootB, nameB)
			if err != nil {
				return err
			}
			if toA(tb) != ta {
				unexplained(rel, "symlink target differs beyond the output hashes")
			} else if hasHashB(tb) {
				m.Links = append(m.Links, rel)
			}
		case d.Type().IsRegular():
			a, b, err := readBoth(readCompared, rootA, nameA, rootB, nameB)
			if errors.Is(err, treefile.ErrTooBig) {
				unexplained(rel, fmt.Sprintf("bigger than %d MiB: not compared", treefile.MaxCompared>>20))
				return nil
			}
			if err != nil {
				// Replaced since the walk saw it (by a FIFO, a device):
				// never read, never explained.
				unexplained(rel, "not a regular file when read")
				return nil
			}
			if len(a) != len(b) {
				if u := resizedELF(rel, a, b); u != nil {
					m.Unexplained = append(m.Unexplained, *u)
					return nil
				}
				if payloadKind(b) == "" && !isELF(b) {
					m.Unexplained = append(m.Unexplained, c.resizedText(rel, a, b))
					return nil
				}
				unexplained(rel, fmt.Sprintf("%ssize differs (%d vs %d bytes): path-dependent lengths or orderings", payloadKind(b), len(a), len(b)))
				return nil
			}
			m.Stats.FilesCompared++
			m.Stats.BytesCompared += int64(len(b))
			if bytes.Equal(a, b) {
				return nil
			}
			fm, le, u := c.classify(rel, a, b)
			if u != nil {
				m.Unexplained = append(m.Unexplained, *u)
			}
			if le != nil {
				elfs = append(elfs, le)
			}
			if fm != nil {
				m.Files = append(m.Files, *fm)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("learn path map of %s: %w", treeB, err)
	}
	err = walkBelow(treeA, func(_, rel string, d fs.DirEntry) error {
		if !seenA[rel] {
			unexplained(rel, "only in tree A")
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("learn path map of %s: %w", treeA, err)
	}
	m.resolveBuildIDs(elfs)
	hashLen := map[string]int{}
	for _, o := range outs {
		hashLen[o.name] = len(o.hashB)
	}
	for _, f := range m.Files {
		for _, r := range f.Runs {
			if r.Len == hashLen[r.Output] {
				m.Stats.WholeHashes++
			} else {
				m.Stats.Fragments++
			}
		}
		if f.BuildID != nil {
			m.Stats.BuildIDs++
		}
	}
	return m, nil
}

// walkBelow calls fn for every entry below root (root itself excluded)
// with its path and its slash-separated path relative to root; fn may
// return filepath.SkipDir for a directory.
func walkBelow(root string, fn func(path, rel string, d fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		return fn(path, filepath.ToSlash(rel), d)
	})
}

// readBoth reads the same entry of both builds' trees with read.
func readBoth[T any](read func(*os.Root, string) (T, error), rootA *os.Root, nameA string, rootB *os.Root, nameB string) (a, b T, err error) {
	if a, err = read(rootA, nameA); err != nil {
		return a, b, err
	}
	b, err = read(rootB, nameB)
	return a, b, err
}

// readCompared reads a regular file of a tree whole, up to the size
// nixlayer compares.
func readCompared(root *os.Root, name string) ([]byte, error) {
	return treefile.Read(root, name, treefile.MaxCompared)
}

// learnedELF is an ELF file of tree B with a build-id, remembered until
// all files are seen so stripped copies can find their linker output.
type learnedELF struct {
	rel       string
	id        []byte
	scheme    string // "" when no known algorithm reproduces the id
	changed   bool   // path-dependent bytes were found
	idChanged bool   // the id differs between the builds
	descOff   int    // where the id sits in the file
	descSize  int
	fileIndex int // index into Map.Files, -1 when not there
}

// resolveBuildIDs gives each changed ELF file a way to get its new id, or
// records why there is none.
func (m *Map) resolveBuildIDs(elfs []*learnedELF) {
	index := map[string]int{}
	for i, f := range m.Files {
		index[f.Path] = i
	}
	byID := map[string]*learnedELF{}
	for _, e := range elfs {
		e.fileIndex = -1
		if i, ok := index[e.rel]; ok {
			e.fileIndex = i
		}
		if e.scheme != "" && e.fileIndex >= 0 {
			byID[string(e.id)] = e
		}
	}
	for _, e := range elfs {
		if !e.changed || e.fileIndex < 0 {
			continue
		}
		bid := m.Files[e.fileIndex].BuildID
		if e.scheme != "" {
			bid.Scheme = e.scheme
			continue
		}
		if src, ok := byID[string(e.id)]; ok {
			bid.Scheme, bid.From = schemeCarried, src.rel
			continue
		}
		hint := "uuid, another linker, or an unknown algorithm?"
		if !e.idChanged {
			hint = "the same in both builds: a fixed --build-id=0x…?"
		}
		var offs []int64
		for i := 0; i < e.descSize && i < maxOffsets; i++ {
			offs = append(offs, int64(e.descOff+i))
		}
		m.Unexplained = append(m.Unexplained, Unexplained{
			Path:   e.rel,
			Why:    fmt.Sprintf("unknown build-id scheme: neither GNU ld nor LLD algorithms reproduce id %x, and no unstripped file has it (%s)", e.id, hint),
			Strays: Strays{Offsets: offs, Bytes: e.descSize, Sections: []string{".note.gnu.build-id"}},
		})
	}
}

// classifier explains differing bytes by output hashes.
type classifier struct {
	outs []outputHash
	// byPair finds the hash positions whose characters are (byte in A,
	// byte in B).
	byPair map[[2]byte][]HashRef
	index  map[string]int
}

func newClassifier(outs []outputHash) *classifier {
	c := &classifier{outs: outs, byPair: map[[2]byte][]HashRef{}, index: map[string]int{}}
	for i, o := range outs {
		c.index[o.name] = i
		for k := range o.hashB {
			p := [2]byte{o.hashA[k], o.hashB[k]}
			c.byPair[p] = append(c.byPair[p], HashRef{o.name, k})
		}
	}
	return c
}

// classify maps the differing bytes of one file. It returns the file's
// map (nil when nothing is path-dependent), the build-id facts of an ELF
// file, and what cannot be rewritten exactly (nil when everything can).
func (c *classifier) classify(rel string, a, b []byte) (*FileMap, *learnedELF, *Unexplained) {
	fm := &FileMap{Path: rel}
	var im *elfImage
	var le *learnedELF
	if isELF(b) {
		if parsed, err := parseELF(b); err == nil {
			im = parsed
		}
	}
	if im != nil && im.descSize > 0 {
		le = &learnedELF{rel: rel, id: bytes.Clone(im.buildID()), descOff: im.descOff, descSize: im.descSize}
	}
	inDesc := func(i int) bool {
		return le != nil && i >= im.descOff && i < im.descOff+im.descSize
	}
	var strays []int
	for i := 0; i < len(b); {
		if a[i] == b[i] {
			i++
			continue
		}
		if inDesc(i) {
			le.idChanged = true
			i++
			continue
		}
		r, ok := c.bestRun(a, b, i)
		if !ok {
			strays = append(strays, i)
			i++
			continue
		}
		fm.Runs = append(fm.Runs, r)
		i += r.Len
	}
	if len(fm.Runs) == 0 && len(strays) == 0 && (le == nil || !le.idChanged) {
		return nil, le, nil
	}
	if le != nil {
		le.changed = true
		le.scheme = im.detectScheme() // costs a few hashes of the file: only when needed
		fm.BuildID = &BuildID{Off: int64(im.descOff), Size: im.descSize}
	}
	if len(strays) == 0 {
		return fm, le, nil
	}
	u := &Unexplained{Path: rel, Strays: Strays{Bytes: len(strays), IDCovers: le != nil}}
	if secs, _, ok := sectionDiff(a, b, fm.explained(len(b))); ok && im != nil {
		// By each build's own layout: bytes a moved section shifted are
		// not blamed on the sections after it.
		u.Sections = secs
		for _, off := range strays {
			if len(u.Offsets) == maxOffsets {
				break
			}
			if slices.Contains(secs, im.sectionAt(int64(off))) {
				u.addOffset(int64(off))
			}
		}
		if len(secs) == 0 {
			u.Sections = []string{""} // only bytes outside every section
		}
	} else {
		for _, off := range strays {
			u.addOffset(int64(off))
			if im != nil {
				u.addSection(im.sectionAt(int64(off)))
			}
		}
	}
	u.Why = explainStrays(b, im, strays, u.Sections)
	return fm, le, u
}

// resizedELF describes an ELF file whose size differs between the builds
// (compressed debug sections, say) by the sections that differ; nil when
// it is no ELF file or the builds' sections do not pair up.
func resizedELF(rel string, a, b []byte) *Unexplained {
	secs, offs, ok := sectionDiff(a, b, nil)
	if !ok || len(secs) == 0 {
		return nil
	}
	im, err := parseELF(b)
	if err != nil {
		return nil
	}
	return &Unexplained{
		Path:   rel,
		Why:    fmt.Sprintf("ELF file: size differs (%d vs %d bytes), in section %s%s", len(a), len(b), strings.Join(secs, ", "), sectionsHint(im, secs)),
		Strays: Strays{Offsets: offs[:min(len(offs), maxOffsets)], Sections: secs, IDCovers: im.descSize > 0},
	}
}

// resizedText describes a file whose size differs between the builds and
// that is neither ELF nor a compressed payload: a line one build's
// environment holds and the other's lacks (the stdenv's env-vars of two
// derivations), or path-dependent lengths. The bytes lie between the two
// builds' common beginning and end (output hashes and their fragments
// aside); when that region is short enough, its offsets are sampled densely
// enough for the judge to follow every byte of it into the outputs
// (Reaches' windows overlap); otherwise it has none, and counts as reaching.
func (c *classifier) resizedText(rel string, a, b []byte) Unexplained {
	n := min(len(a), len(b))
	p := c.firstStray(a[:n], b[:n])
	// Aligned at their ends: the last byte no hash explains.
	last := -1
	a2, b2 := a[len(a)-n:], b[len(b)-n:]
	for i := 0; i < n; {
		if a2[i] == b2[i] {
			i++
		} else if r, ok := c.bestRun(a2, b2, i); ok {
			i += r.Len
		} else {
			last = i
			i++
		}
	}
	s := n - 1 - last
	p = min(p, n-s)
	end := len(b) - s
	u := Unexplained{Path: rel, Why: fmt.Sprintf("size differs (%d vs %d bytes): path-dependent lengths or orderings, or a line one build's environment holds", len(a), len(b))}
	u.Bytes = max(end-p, 0)
	step := needleLen / 2
	if len(b) == 0 || end-p > maxOffsets*step {
		return u
	}
	for off := p; off < end && len(u.Offsets) < maxOffsets; off += step {
		u.addOffset(int64(off))
	}
	u.addOffset(int64(min(max(end-1, p), len(b)-1)))
	return u
}

// firstStray is the first index where a and b (as long) differ in a way
// no output hash explains (len(a) when none does).
func (c *classifier) firstStray(a, b []byte) int {
	for i := 0; i < len(a); {
		if a[i] == b[i] {
			i++
		} else if r, ok := c.bestRun(a, b, i); ok {
			i += r.Len
		} else {
			return i
		}
	}
	return len(a)
}

// explained marks the bytes of a file (n long) that the map accounts for:
// its runs and its build-id.
func (fm *FileMap) explained(n int) func(off int64) bool {
	mask := make([]bool, n)
	for _, r := range fm.Runs {
		for k := r.Off; k < r.Off+int64(r.Len) && k < int64(n); k++ {
			mask[k] = true
		}
	}
	if fm.BuildID != nil {
		for k := fm.BuildID.Off; k < fm.BuildID.Off+int64(fm.BuildID.Size) && k < int64(n); k++ {
			mask[k] = true
		}
	}
	return func(off int64) bool { return off >= 0 && off < int64(n) && mask[off] }
}

// sectionDiff compares two builds of an ELF file section by section, each
// by its own layout (a section that grows moves the ones after it, which a
// byte-by-byte comparison would blame). It returns the sections whose
// contents differ beyond the bytes explained holds (B's offsets; nil for
// none) and the first differing offset in B of each; ok is false unless
// both are ELF files with the same sections.
func sectionDiff(a, b []byte, explained func(off int64) bool) (names []string, offs []int64, ok bool) {
	ia, errA := parseELF(a)
	ib, errB := parseELF(b)
	if errA != nil || errB != nil || len(ia.sections) != len(ib.sections) || len(ib.sections) == 0 {
		return nil, nil, false
	}
	for i, sb := range ib.sections {
		sa := ia.sections[i]
		if sa.name != sb.name {
			return nil, nil, false
		}
		if sb.typ == elf.SHT_NOBITS || (sa.size == 0 && sb.size == 0) {
			continue
		}
		ca, cb := ia.contents(sa), ib.contents(sb)
		first := -1
		for k := 0; k < min(len(ca), len(cb)) && first < 0; k++ {
			if ca[k] != cb[k] && (explained == nil || !explained(int64(sb.offset)+int64(k))) {
				first = k
			}
		}
		if first < 0 && len(ca) != len(cb) {
			first = min(len(ca), len(cb))
		}
		if first >= 0 {
			names = append(names, sb.name)
			offs = append(offs, int64(sb.offset)+int64(min(first, max(len(cb)-1, 0))))
		}
	}
	return names, offs, true
}

// bestRun explains the differing byte at i as a run of hash characters.
// Several positions k may fit the byte pair; the one whose whole path
// (store directory and name included) matches the most neighbouring bytes
// wins, and equally good ones are kept as alternatives.
func (c *classifier) bestRun(a, b []byte, i int) (Run, bool) {
	var best Run
	bestScore := -1
	for _, ref := range c.byPair[[2]byte{a[i], b[i]}] {
		o := c.outs[c.index[ref.Output]]
		p := o.at + ref.K // position of byte i in the paths
		back := 0
		for back < p && back < i && a[i-back-1] == o.pathA[p-back-1] && b[i-back-1] == o.pathB[p-back-1] {
			back++
		}
		fwd := 1
		for p+fwd < len(o.pathB) && i+fwd < len(b) && a[i+fwd] == o.pathA[p+fwd] && b[i+fwd] == o.pathB[p+fwd] {
			fwd++
		}
		r := Run{Off: int64(i), Output: ref.Output, K: ref.K, Len: min(fwd, len(o.hashB)-ref.K)}
		switch score := back + fwd; {
		case score > bestScore:
			best, bestScore = r, score
		case score == bestScore && r.Len == best.Len:
			best.Alt = append(best.Alt, ref)
		}
	}
	return best, bestScore >= 0
}

// explainStrays says why bytes no hash explains differ, naming the likely
// cause so the user knows what to change. secs are the ELF sections that
// hold them.
func explainStrays(b []byte, im *elfImage, strays []int, secs []string) string {
	where := fmt.Sprintf("%d bytes differ beyond the output paths, first at offset %d", len(strays), strays[0])
	if kind := payloadKind(b); kind != "" {
		return kind + where
	}
	if im == nil {
		return where + " (checksum, compression or ordering?)"
	}
	if len(secs) == 0 || secs[0] == "" {
		return "ELF file: " + where
	}
	return fmt.Sprintf("%s, in section %s%s", where, strings.Join(secs, ", "), sectionsHint(im, secs))
}

// sectionsHint is the hint of the first section that has one.
func sectionsHint(im *elfImage, secs []string) string {
	for _, sec := range secs {
		if h := sectionHint(im, sec); h != "" {
			return h
		}
	}
	return ""
}

// sectionHint names the likely cause of unexplained bytes in a section.
func sectionHint(im *elfImage, sec string) string {
	switch {
	case strings.HasPrefix(sec, ".debug_str"), strings.HasPrefix(sec, ".debug_macro"), strings.HasPrefix(sec, ".debug_line_str"):
		return " (debug strings that moved: -frandom-seed from the output path, or gcc -g3's strings ordered by content?)"
	case im.hasSection(".debug_macro") && strings.HasPrefix(sec, ".debug"):
		return " (gcc -g3: macro info and debug strings ordered by content)"
	case strings.HasPrefix(sec, ".zdebug"), strings.HasPrefix(sec, ".debug"):
		return " (debug info: compressed, content-ordered, or recording -frandom-seed?)"
	case sec == ".gnu_debuglink":
		return " (CRC of a separate debug file)"
	case sec == ".gnu.hash" || sec == ".hash" || sec == ".dynsym" || sec == ".symtab":
		return " (paths in symbol names?)"
	}
	return ""
}

// payloadKind names compressed or archived contents by their magic bytes:
// their bytes depend on the paths in ways no byte map can follow.
func payloadKind(b []byte) string {
	switch f := FormatOf(b); f {
	case FormatGzip, FormatBzip2, FormatXZ, FormatZstd:
		return string(f) + " payload: "
	case FormatZip:
		return "zip archive (compressed members or CRCs): "
	}
	return ""
}

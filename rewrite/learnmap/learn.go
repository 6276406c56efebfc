// Package learnmap learns a chain's path map: it compares two builds of the
// same phases made with different output paths (the second with
// SyntheticPath, or two real builds whose hashes differ at every index:
// Pairable) into a rewrite.Map of every byte that depends on the paths,
// locating the bytes no output hash explains closely enough for
// unexplained.Reaches to follow them; a third build corroborates a pair
// whose hashes agree somewhere (Covered, Corroborate). The learner (package
// learn) calls it on the trees of its twins and of real rebuilds.
package learnmap

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
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/buildid"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
)

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
		ha, hb := rewrite.HashPart(pa), rewrite.HashPart(pb)
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
func Learn(treeA, treeB string, pathsA, pathsB map[string]string) (*rewrite.Map, error) {
	outs, err := outputHashes(pathsA, pathsB)
	if err != nil {
		return nil, fmt.Errorf("learn path map: %w", err)
	}
	m := &rewrite.Map{Paths: pathsB, Problems: agreements(outs)}
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
	unexplained := func(rel, why string) { m.Unexplained = append(m.Unexplained, rewrite.Unexplained{Path: rel, Why: why}) }
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
				if payloadKind(b) == "" && !buildid.IsELF(b) {
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
	resolveBuildIDs(m, elfs)
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

// resolveBuildIDs gives each changed ELF file of m a way to get its new id,
// or records why there is none.
func resolveBuildIDs(m *rewrite.Map, elfs []*learnedELF) {
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
			bid.Scheme, bid.From = buildid.SchemeCarried, src.rel
			continue
		}
		hint := "uuid, another linker, or an unknown algorithm?"
		if !e.idChanged {
			hint = "the same in both builds: a fixed --build-id=0x…?"
		}
		var offs []int64
		for i := 0; i < e.descSize && i < rewrite.MaxOffsets; i++ {
			offs = append(offs, int64(e.descOff+i))
		}
		m.Unexplained = append(m.Unexplained, rewrite.Unexplained{
			Path:   e.rel,
			Why:    fmt.Sprintf("unknown build-id scheme: neither GNU ld nor LLD algorithms reproduce id %x, and no unstripped file has it (%s)", e.id, hint),
			Strays: rewrite.Strays{Offsets: offs, Bytes: e.descSize, Sections: []string{".note.gnu.build-id"}},
		})
	}
}

// classifier explains differing bytes by output hashes.
type classifier struct {
	outs []outputHash
	// byPair finds the hash positions whose characters are (byte in A,
	// byte in B).
	byPair map[[2]byte][]rewrite.HashRef
	index  map[string]int
}

func newClassifier(outs []outputHash) *classifier {
	c := &classifier{outs: outs, byPair: map[[2]byte][]rewrite.HashRef{}, index: map[string]int{}}
	for i, o := range outs {
		c.index[o.name] = i
		for k := range o.hashB {
			p := [2]byte{o.hashA[k], o.hashB[k]}
			c.byPair[p] = append(c.byPair[p], rewrite.HashRef{Output: o.name, K: k})
		}
	}
	return c
}

// classify maps the differing bytes of one file. It returns the file's
// map (nil when nothing is path-dependent), the build-id facts of an ELF
// file, and what cannot be rewritten exactly (nil when everything can).
func (c *classifier) classify(rel string, a, b []byte) (*rewrite.FileMap, *learnedELF, *rewrite.Unexplained) {
	fm := &rewrite.FileMap{Path: rel}
	var im *buildid.Image
	var le *learnedELF
	if buildid.IsELF(b) {
		if parsed, err := buildid.ParseELF(b); err == nil {
			im = parsed
		}
	}
	if im != nil && im.DescSize > 0 {
		le = &learnedELF{rel: rel, id: bytes.Clone(im.BuildID()), descOff: im.DescOff, descSize: im.DescSize}
	}
	inDesc := func(i int) bool {
		return le != nil && i >= im.DescOff && i < im.DescOff+im.DescSize
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
		le.scheme = im.DetectScheme() // costs a few hashes of the file: only when needed
		fm.BuildID = &rewrite.BuildID{Off: int64(im.DescOff), Size: im.DescSize}
	}
	if len(strays) == 0 {
		return fm, le, nil
	}
	u := &rewrite.Unexplained{Path: rel, Strays: rewrite.Strays{Bytes: len(strays), IDCovers: le != nil}}
	if secs, _, ok := sectionDiff(a, b, explainedBy(fm, len(b))); ok && im != nil {
		// By each build's own layout: bytes a moved section shifted are
		// not blamed on the sections after it.
		u.Sections = secs
		for _, off := range strays {
			if len(u.Offsets) == rewrite.MaxOffsets {
				break
			}
			if slices.Contains(secs, im.SectionAt(int64(off))) {
				u.AddOffset(int64(off))
			}
		}
		if len(secs) == 0 {
			u.Sections = []string{""} // only bytes outside every section
		}
	} else {
		for _, off := range strays {
			u.AddOffset(int64(off))
			if im != nil {
				u.AddSection(im.SectionAt(int64(off)))
			}
		}
	}
	u.Why = explainStrays(b, im, strays, u.Sections)
	return fm, le, u
}

// resizedELF describes an ELF file whose size differs between the builds
// (compressed debug sections, say) by the sections that differ; nil when
// it is no ELF file or the builds' sections do not pair up.
func resizedELF(rel string, a, b []byte) *rewrite.Unexplained {
	secs, offs, ok := sectionDiff(a, b, nil)
	if !ok || len(secs) == 0 {
		return nil
	}
	im, err := buildid.ParseELF(b)
	if err != nil {
		return nil
	}
	return &rewrite.Unexplained{
		Path:   rel,
		Why:    fmt.Sprintf("ELF file: size differs (%d vs %d bytes), in section %s%s", len(a), len(b), strings.Join(secs, ", "), sectionsHint(im, secs)),
		Strays: rewrite.Strays{Offsets: offs[:min(len(offs), rewrite.MaxOffsets)], Sections: secs, IDCovers: im.DescSize > 0},
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
func (c *classifier) resizedText(rel string, a, b []byte) rewrite.Unexplained {
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
	u := rewrite.Unexplained{Path: rel, Why: fmt.Sprintf("size differs (%d vs %d bytes): path-dependent lengths or orderings, or a line one build's environment holds", len(a), len(b))}
	u.Bytes = max(end-p, 0)
	step := unexplained.NeedleLen / 2
	if len(b) == 0 || end-p > rewrite.MaxOffsets*step {
		return u
	}
	for off := p; off < end && len(u.Offsets) < rewrite.MaxOffsets; off += step {
		u.AddOffset(int64(off))
	}
	u.AddOffset(int64(min(max(end-1, p), len(b)-1)))
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

// explainedBy marks the bytes of a file (n long) that its map fm accounts
// for: its runs and its build-id.
func explainedBy(fm *rewrite.FileMap, n int) func(off int64) bool {
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
	ia, errA := buildid.ParseELF(a)
	ib, errB := buildid.ParseELF(b)
	if errA != nil || errB != nil || len(ia.Sections) != len(ib.Sections) || len(ib.Sections) == 0 {
		return nil, nil, false
	}
	for i, sb := range ib.Sections {
		sa := ia.Sections[i]
		if sa.Name != sb.Name {
			return nil, nil, false
		}
		if sb.Type == elf.SHT_NOBITS || (sa.Size == 0 && sb.Size == 0) {
			continue
		}
		ca, cb := ia.Contents(sa), ib.Contents(sb)
		first := -1
		for k := 0; k < min(len(ca), len(cb)) && first < 0; k++ {
			if ca[k] != cb[k] && (explained == nil || !explained(int64(sb.Offset)+int64(k))) {
				first = k
			}
		}
		if first < 0 && len(ca) != len(cb) {
			first = min(len(ca), len(cb))
		}
		if first >= 0 {
			names = append(names, sb.Name)
			offs = append(offs, int64(sb.Offset)+int64(min(first, max(len(cb)-1, 0))))
		}
	}
	return names, offs, true
}

// bestRun explains the differing byte at i as a run of hash characters.
// Several positions k may fit the byte pair; the one whose whole path
// (store directory and name included) matches the most neighbouring bytes
// wins, and equally good ones are kept as alternatives.
func (c *classifier) bestRun(a, b []byte, i int) (rewrite.Run, bool) {
	var best rewrite.Run
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
		r := rewrite.Run{Off: int64(i), Output: ref.Output, K: ref.K, Len: min(fwd, len(o.hashB)-ref.K)}
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
func explainStrays(b []byte, im *buildid.Image, strays []int, secs []string) string {
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
func sectionsHint(im *buildid.Image, secs []string) string {
	for _, sec := range secs {
		if h := sectionHint(im, sec); h != "" {
			return h
		}
	}
	return ""
}

// sectionHint names the likely cause of unexplained bytes in a section.
func sectionHint(im *buildid.Image, sec string) string {
	switch {
	case strings.HasPrefix(sec, ".debug_str"), strings.HasPrefix(sec, ".debug_macro"), strings.HasPrefix(sec, ".debug_line_str"):
		return " (debug strings that moved: -frandom-seed from the output path, or gcc -g3's strings ordered by content?)"
	case im.HasSection(".debug_macro") && strings.HasPrefix(sec, ".debug"):
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
	switch f := rewrite.FormatOf(b); f {
	case rewrite.FormatGzip, rewrite.FormatBzip2, rewrite.FormatXZ, rewrite.FormatZstd:
		return string(f) + " payload: "
	case rewrite.FormatZip:
		return "zip archive (compressed members or CRCs): "
	}
	return ""
}

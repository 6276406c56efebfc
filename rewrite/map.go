package rewrite

import (
	"slices"
	"strings"
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
	// (unexplained.Reaches) and on their cause.
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
	// Offsets are the first differing bytes (at most MaxOffsets); empty
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

// AddOffset records a differing byte, while fewer than MaxOffsets are.
func (s *Strays) AddOffset(off int64) {
	if len(s.Offsets) < MaxOffsets {
		s.Offsets = append(s.Offsets, off)
	}
}

// AddSection records a section holding differing bytes, once.
func (s *Strays) AddSection(sec string) {
	if !slices.Contains(s.Sections, sec) {
		s.Sections = append(s.Sections, sec)
	}
}

// merge adds what another look at the same file found.
func (s *Strays) merge(o Strays) {
	s.Bytes += o.Bytes
	s.IDCovers = s.IDCovers || o.IDCovers
	for _, off := range o.Offsets {
		s.AddOffset(off)
	}
	for _, sec := range o.Sections {
		s.AddSection(sec)
	}
}

// clone is a copy of s that adding to leaves s as it is.
func (s Strays) clone() Strays {
	s.Offsets, s.Sections = slices.Clone(s.Offsets), slices.Clone(s.Sections)
	return s
}

// MaxOffsets bounds the offsets kept per file: enough to find the bytes
// again in the outputs, small enough for maps of thousands of objects.
const MaxOffsets = 32

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

// Stats are the figures of a learnmap.Learn, for reports and benchmarks.
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
			rel = strings.ReplaceAll(rel, HashPart(ref), HashPart(p))
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

package rewrite

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/rewrite/buildid"
)

// minRun is the shortest run of an output hash's characters the
// provisional scan rewrites where nothing anchors it (a store directory
// before it, "-name" after it): 8 of 32 nixbase32 characters are a chance
// match once in 2^40 positions.
const minRun = 8

// Provisional rewrites reused layers before their path map is learned, so
// that an edit gets a result at once. It does what a scan can see: whole
// hashes; fragments a compiler split off where the store directory comes
// before them (a hash prefix) or "-name" after them (a hash suffix), and
// runs of at least minRun hash characters anywhere (e.g. gcc's
// -frandom-seed); ELF build-ids recomputed with the scheme that reproduced
// the old id, and carried into stripped copies that had the same id;
// symlink targets and entry names. Fragments without an anchor, checksums
// and compressed bytes stay as they were, so its verdict is never exact:
// the runner keeps the result outside the store until the learned map
// confirms the rewrite (or replaces the result).
type Provisional struct{}

// ProvisionalMethod names the provisional rewrite in verdicts.
const ProvisionalMethod = "provisional scan"

// Rewrite implements Rewriter.
func (Provisional) Rewrite(root string, old2new map[string]string) (Verdict, error) {
	why := "no path map learned yet: rewritten provisionally (whole hashes, scanned fragments, build-ids)"
	v := Verdict{Method: ProvisionalMethod, Why: []string{why}, Failed: []string{why}}
	var pairs []scanPair
	if err := eachChangedHash(old2new, func(o, n string) { pairs = append(pairs, newScanPair(o, n)) }); err != nil {
		return v, err
	}
	if len(pairs) == 0 {
		return v, nil
	}
	newIDs := map[string][]byte{} // old build-id → the recomputed one
	var keepIDs []idFile          // files whose id could not be recomputed
	name := func(s string) string { return scanName(pairs, s) }
	files, err := rewriteTree(root, name, func(path string, data []byte) ([]byte, error) {
		nd := scanBytes(pairs, data)
		if !buildid.IsELF(data) {
			return nd, nil
		}
		im, err := buildid.ParseELF(data)
		if err != nil || im.DescSize == 0 {
			return nd, nil
		}
		old, scheme := string(im.BuildID()), ""
		if nd != nil {
			scheme = im.DetectScheme()
		}
		if scheme == "" {
			keepIDs = append(keepIDs, idFile{path: path, off: im.DescOff, old: old})
			return nd, nil
		}
		if nim, err := buildid.ParseELF(nd); err == nil {
			if id, err := nim.ComputeBuildID(scheme); err == nil {
				copy(nd[nim.DescOff:], id)
				newIDs[old] = id
			}
		}
		return nd, nil
	})
	v.Files += files
	if err != nil {
		return v, fmt.Errorf("provisional rewrite: %w", err)
	}
	// Stripped copies keep their linker output's id: carry the new one.
	for _, f := range keepIDs {
		id, ok := newIDs[f.old]
		if !ok {
			continue
		}
		rel, _ := filepath.Rel(root, f.path) // renamed since, with its hash
		if err := patchFile(filepath.Join(root, name(rel)), int64(f.off), id); err != nil {
			return v, fmt.Errorf("provisional rewrite of %s: %w", root, err)
		}
		v.Files++
	}
	return v, nil
}

// idFile is an ELF file whose build-id the scan could not recompute.
type idFile struct {
	path string
	off  int
	old  string
}

// patchFile writes b at off, keeping the file's mode and times.
func patchFile(path string, off int64, b []byte) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if off < 0 || off+int64(len(b)) > int64(len(data)) || bytes.Equal(data[off:off+int64(len(b))], b) {
		return nil
	}
	copy(data[off:], b)
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return writeKeepingMode(path, data, info)
}

// scanPair is one output path to rewrite, with what the scan looks for.
type scanPair struct {
	oldHash, newHash []byte
	storeDir         []byte // "/nix/store/": a hash prefix follows it
	dashName         []byte // "-hello-1": a hash suffix comes before it
	grams            map[[minRun]byte]int
	starts           *[1 << 16]bool // the first two bytes of every gram
}

func newScanPair(oldPath, newPath string) scanPair {
	ho := HashPart(oldPath)
	base := filepath.Base(oldPath)
	p := scanPair{
		oldHash:  []byte(ho),
		newHash:  []byte(HashPart(newPath)),
		storeDir: []byte(filepath.Dir(oldPath) + "/"),
		dashName: []byte(base[len(ho):]),
		grams:    map[[minRun]byte]int{},
		starts:   new([1 << 16]bool),
	}
	for k := 0; k+minRun <= len(ho); k++ {
		var g [minRun]byte
		copy(g[:], ho[k:])
		if _, dup := p.grams[g]; !dup {
			p.grams[g] = k
		}
		p.starts[int(ho[k])<<8|int(ho[k+1])] = true
	}
	return p
}

// scanName rewrites whole hashes in a name or link target.
func scanName(pairs []scanPair, s string) string {
	b := []byte(s)
	for _, p := range pairs {
		b = bytes.ReplaceAll(b, p.oldHash, p.newHash)
	}
	return string(b)
}

// scanBytes returns data with every hash occurrence and scannable
// fragment rewritten, or nil when nothing changed.
func scanBytes(pairs []scanPair, data []byte) []byte {
	var out []byte
	set := func(off int, b []byte) {
		if out == nil {
			out = bytes.Clone(data)
		}
		copy(out[off:], b)
	}
	for _, p := range pairs {
		n := len(p.oldHash)
		cur := func() []byte {
			if out != nil {
				return out
			}
			return data
		}
		// Whole hashes.
		for i := 0; ; {
			j := bytes.Index(cur()[i:], p.oldHash)
			if j < 0 {
				break
			}
			set(i+j, p.newHash)
			i += j + n
		}
		// Hash prefixes after the store directory that are not another
		// store path (a whole hash and a dash).
		for i := 0; ; {
			j := bytes.Index(cur()[i:], p.storeDir)
			if j < 0 {
				break
			}
			at := i + j + len(p.storeDir)
			b := cur()
			l := 0
			for l < n && at+l < len(b) && b[at+l] == p.oldHash[l] {
				l++
			}
			if l > 0 && l < n && !wholeHashAt(b, at, n) {
				set(at, p.newHash[:l])
			}
			i = at
		}
		// Hash suffixes before "-name" that are not the end of a whole hash.
		for i := 0; ; {
			j := bytes.Index(cur()[i:], p.dashName)
			if j < 0 {
				break
			}
			end := i + j
			b := cur()
			l := 0
			for l < n && end-l-1 >= 0 && b[end-l-1] == p.oldHash[n-l-1] {
				l++
			}
			if l > 0 && l < n && !(end-n >= 0 && wholeHashAt(b, end-n, n) && bytes.HasSuffix(b[:end-n], p.storeDir)) {
				set(end-l, p.newHash[n-l:])
			}
			i = end + len(p.dashName)
		}
		// Unanchored runs of at least minRun hash characters.
		for i := 0; i+minRun <= len(cur()); {
			b := cur()
			if !p.starts[int(b[i])<<8|int(b[i+1])] {
				i++
				continue
			}
			var g [minRun]byte
			copy(g[:], b[i:])
			k, ok := p.grams[g]
			if !ok {
				i++
				continue
			}
			l := minRun
			for k+l < n && i+l < len(b) && b[i+l] == p.oldHash[k+l] {
				l++
			}
			set(i, p.newHash[k:k+l])
			i += l
		}
	}
	return out
}

// wholeHashAt reports whether b holds n nixbase32 characters at off
// followed by a dash: the hash of some store path.
func wholeHashAt(b []byte, off, n int) bool {
	if off < 0 || off+n >= len(b) || b[off+n] != '-' {
		return false
	}
	for _, c := range b[off : off+n] {
		if !nixbase32.Is(c) {
			return false
		}
	}
	return true
}

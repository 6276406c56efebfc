package storetree

import (
	"fmt"
	"slices"
	"sort"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/nixstore"
)

const hashLen = 32

// ScanReferences returns those candidates (store paths) whose hash part
// occurs anywhere in the tree at root: in file contents, file names or
// symlink targets. Like Nix, it scans the tree's NAR serialization once
// for all candidates. The result is sorted.
func ScanReferences(root string, candidates []string) ([]string, error) {
	s, err := newRefScanner(candidates)
	if err != nil {
		return nil, err
	}
	if err := DumpNAR(s, root); err != nil {
		return nil, fmt.Errorf("scanning %s for references: %w", root, err)
	}
	return s.found(), nil
}

// refScanner is an io.Writer that looks for store path hash parts in
// the bytes written to it, also across write boundaries.
type refScanner struct {
	byHash map[string][]string
	seen   map[string]bool
	tail   []byte // last hashLen-1 bytes written
	join   []byte
}

func newRefScanner(candidates []string) (*refScanner, error) {
	s := &refScanner{byHash: map[string][]string{}, seen: map[string]bool{}}
	for _, c := range candidates {
		h := nixstore.HashPart(c)
		if h == "" || nixbase32.ValidateString(h) != nil {
			return nil, fmt.Errorf("scanning references: candidate %q is not a store path", c)
		}
		s.byHash[h] = append(s.byHash[h], c)
	}
	return s, nil
}

func (s *refScanner) Write(p []byte) (int, error) {
	if len(s.byHash) == 0 {
		return len(p), nil
	}
	// Hashes straddling the previous write and this one.
	if len(s.tail) > 0 {
		s.join = append(append(s.join[:0], s.tail...), p[:min(len(p), hashLen-1)]...)
		s.scan(s.join)
	}
	s.scan(p)
	// Keep the last hashLen-1 bytes of everything written so far.
	if len(p) >= hashLen-1 {
		s.tail = append(s.tail[:0], p[len(p)-(hashLen-1):]...)
	} else {
		s.tail = append(s.tail, p...)
		if len(s.tail) > hashLen-1 {
			s.tail = s.tail[len(s.tail)-(hashLen-1):]
		}
	}
	return len(p), nil
}

// scan finds candidate hashes in b, skipping ahead past bytes that
// cannot be part of a hash (as Nix's scanner does).
func (s *refScanner) scan(b []byte) {
	for i := 0; i+hashLen <= len(b); {
		j := hashLen - 1
		for j >= 0 && nixbase32.Is(b[i+j]) {
			j--
		}
		if j >= 0 {
			i += j + 1
			continue
		}
		if _, ok := s.byHash[string(b[i:i+hashLen])]; ok {
			s.seen[string(b[i:i+hashLen])] = true
		}
		i++
	}
}

func (s *refScanner) found() []string {
	var res []string
	for h := range s.seen {
		res = append(res, s.byHash[h]...)
	}
	sort.Strings(res)
	return slices.Compact(res)
}

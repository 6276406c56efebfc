package rewrite

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"debug/elf"
	"encoding/binary"
	"errors"
	"hash"

	"github.com/cespare/xxhash/v2"
)

// An ELF build-id is a hash the linker computes over its own output, so
// every rewritten byte invalidates it. These are the schemes we can
// recompute; a scheme is trusted for a file only after it reproduced the
// id the linker wrote there.
const (
	schemeGNUSHA1 = "gnu-sha1" // GNU ld --build-id / =sha1
	schemeGNUMD5  = "gnu-md5"  // GNU ld --build-id=md5
	schemeLLDSHA1 = "lld-sha1" // LLD --build-id=sha1
	schemeLLDMD5  = "lld-md5"  // LLD --build-id=md5
	schemeLLDFast = "lld-fast" // LLD --build-id / =fast (xxHash64)
	// schemeCarried: a stripped file keeps the id of its linker output;
	// the new id is taken from that file's recomputed id.
	schemeCarried = "carried"
)

// ntGNUBuildID is the note type of a build-id (debug/elf lacks it).
const ntGNUBuildID = 3

var errNoBuildID = errors.New("no GNU build-id note")

// elfImage is the little of an ELF file the build-id algorithms need.
type elfImage struct {
	data      []byte
	order     binary.ByteOrder
	is64      bool
	ehsize    int
	phoff     uint64
	phentsize int
	phnum     int
	sections  []elfSection
	idSection int // index of the section holding the build-id note, -1 if none
	noteOff   int // file offset of the build-id note header
	noteEnd   int // file offset just past the note (descriptor padded)
	descOff   int // file offset of the descriptor (the id)
	descSize  int
}

type elfSection struct {
	header []byte // the raw section header
	name   string
	typ    elf.SectionType
	offset uint64
	size   uint64
	// hashedByGNU: bfd keeps a section object for it, so ld hashes its
	// contents; the symbol and string tables it writes itself are left out.
	hashedByGNU bool
}

func isELF(data []byte) bool { return len(data) > 16 && FormatOf(data) == FormatELF }

// parseELF reads the headers straight from the bytes: the GNU algorithm
// hashes them in their on-disk form.
func parseELF(data []byte) (*elfImage, error) {
	if !isELF(data) {
		return nil, errors.New("not an ELF file")
	}
	im := &elfImage{data: data, idSection: -1}
	switch elf.Data(data[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		im.order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		im.order = binary.BigEndian
	default:
		return nil, errors.New("unknown ELF byte order")
	}
	var shoff uint64
	var shentsize, shnum, shstrndx int
	o := im.order
	switch elf.Class(data[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		if len(data) < 64 {
			return nil, errors.New("truncated ELF header")
		}
		im.is64, im.ehsize = true, 64
		im.phoff, shoff = o.Uint64(data[32:]), o.Uint64(data[40:])
		im.phentsize, im.phnum = int(o.Uint16(data[54:])), int(o.Uint16(data[56:]))
		shentsize, shnum, shstrndx = int(o.Uint16(data[58:])), int(o.Uint16(data[60:])), int(o.Uint16(data[62:]))
	case elf.ELFCLASS32:
		if len(data) < 52 {
			return nil, errors.New("truncated ELF header")
		}
		im.ehsize = 52
		im.phoff, shoff = uint64(o.Uint32(data[28:])), uint64(o.Uint32(data[32:]))
		im.phentsize, im.phnum = int(o.Uint16(data[42:])), int(o.Uint16(data[44:]))
		shentsize, shnum, shstrndx = int(o.Uint16(data[46:])), int(o.Uint16(data[48:])), int(o.Uint16(data[50:]))
	default:
		return nil, errors.New("unknown ELF class")
	}
	if im.phoff+uint64(im.phnum*im.phentsize) > uint64(len(data)) {
		return nil, errors.New("program headers beyond end of file")
	}
	header := func(i int) ([]byte, error) {
		start := shoff + uint64(i*shentsize)
		if start+uint64(shentsize) > uint64(len(data)) {
			return nil, errors.New("section headers beyond end of file")
		}
		return data[start : start+uint64(shentsize)], nil
	}
	if shoff != 0 && shentsize > 0 {
		// Extended numbering keeps the real counts in section 0.
		if shnum == 0 || shstrndx == int(elf.SHN_XINDEX) {
			h0, err := header(0)
			if err != nil {
				return nil, err
			}
			s0 := im.section(h0)
			if shnum == 0 {
				shnum = int(s0.size)
			}
			if shstrndx == int(elf.SHN_XINDEX) {
				shstrndx = int(im.link(h0))
			}
		}
		for i := 0; i < shnum; i++ {
			h, err := header(i)
			if err != nil {
				return nil, err
			}
			im.sections = append(im.sections, im.section(h))
		}
	}
	im.markHashed(shstrndx)
	im.findBuildID()
	return im, nil
}

func (im *elfImage) section(h []byte) elfSection {
	o := im.order
	s := elfSection{header: h, typ: elf.SectionType(o.Uint32(h[4:]))}
	if im.is64 {
		s.offset, s.size = o.Uint64(h[24:]), o.Uint64(h[32:])
	} else {
		s.offset, s.size = uint64(o.Uint32(h[16:])), uint64(o.Uint32(h[20:]))
	}
	return s
}

func (im *elfImage) link(h []byte) uint32 {
	if im.is64 {
		return im.order.Uint32(h[40:])
	}
	return im.order.Uint32(h[24:])
}

func (im *elfImage) contents(s elfSection) []byte {
	if s.typ == elf.SHT_NOBITS || s.offset+s.size > uint64(len(im.data)) {
		return nil
	}
	return im.data[s.offset : s.offset+s.size]
}

// markHashed names the sections and decides which contents GNU ld hashes.
func (im *elfImage) markHashed(shstrndx int) {
	skip := map[int]bool{0: true, shstrndx: true}
	for i, s := range im.sections {
		switch s.typ {
		case elf.SHT_SYMTAB:
			skip[i] = true
			skip[int(im.link(s.header))] = true
		case elf.SHT_SYMTAB_SHNDX:
			skip[i] = true
		}
	}
	var names []byte
	if shstrndx > 0 && shstrndx < len(im.sections) {
		names = im.contents(im.sections[shstrndx])
	}
	for i := range im.sections {
		s := &im.sections[i]
		s.hashedByGNU = !skip[i] && s.typ != elf.SHT_NOBITS
		off := int(im.order.Uint32(s.header[0:]))
		if off < len(names) {
			if end := bytes.IndexByte(names[off:], 0); end >= 0 {
				s.name = string(names[off : off+end])
			}
		}
	}
}

// findBuildID locates the NT_GNU_BUILD_ID note, in the section headers or,
// for files without them, in the PT_NOTE segments.
func (im *elfImage) findBuildID() {
	for i, s := range im.sections {
		if s.typ == elf.SHT_NOTE && im.scanNotes(s.offset, s.size) {
			im.idSection = i
			return
		}
	}
	for i := 0; i < im.phnum; i++ {
		p := im.data[im.phoff+uint64(i*im.phentsize):]
		if elf.ProgType(im.order.Uint32(p)) != elf.PT_NOTE {
			continue
		}
		var off, size uint64
		if im.is64 {
			off, size = im.order.Uint64(p[8:]), im.order.Uint64(p[32:])
		} else {
			off, size = uint64(im.order.Uint32(p[4:])), uint64(im.order.Uint32(p[16:]))
		}
		if im.scanNotes(off, size) {
			return
		}
	}
}

func (im *elfImage) scanNotes(off, size uint64) bool {
	if off+size > uint64(len(im.data)) {
		return false
	}
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for pos := off; pos+12 <= off+size; {
		namesz := uint64(im.order.Uint32(im.data[pos:]))
		descsz := uint64(im.order.Uint32(im.data[pos+4:]))
		typ := im.order.Uint32(im.data[pos+8:])
		name := pos + 12
		desc := name + align4(namesz)
		end := desc + align4(descsz)
		if desc+descsz > off+size {
			return false
		}
		if typ == ntGNUBuildID && namesz == 4 && string(im.data[name:name+4]) == "GNU\x00" {
			im.noteOff, im.noteEnd = int(pos), int(min(end, off+size))
			im.descOff, im.descSize = int(desc), int(descsz)
			return true
		}
		pos = end
	}
	return false
}

func (im *elfImage) buildID() []byte {
	if im.descSize == 0 {
		return nil
	}
	return im.data[im.descOff : im.descOff+im.descSize]
}

// computeBuildID hashes the file as the named scheme's linker did.
func (im *elfImage) computeBuildID(scheme string) ([]byte, error) {
	if im.descSize == 0 {
		return nil, errNoBuildID
	}
	var id []byte
	switch scheme {
	case schemeGNUSHA1:
		id = im.gnuHash(sha1.New())
	case schemeGNUMD5:
		id = im.gnuHash(md5.New())
	case schemeLLDSHA1:
		id = im.lldHash(func(b []byte) []byte { s := sha1.Sum(b); return s[:] })
	case schemeLLDMD5:
		id = im.lldHash(func(b []byte) []byte { s := md5.Sum(b); return s[:] })
	case schemeLLDFast:
		id = im.lldHash(lldFastChunkHash)
	default:
		return nil, errors.New("unknown build-id scheme " + scheme)
	}
	if len(id) < im.descSize {
		return nil, errors.New("build-id longer than the " + scheme + " hash")
	}
	return id[:im.descSize], nil
}

// lldFastChunkHash is the chunk hash of LLD's default ("fast") build-id:
// XXH64 with seed 0, stored little-endian.
func lldFastChunkHash(b []byte) []byte {
	return binary.LittleEndian.AppendUint64(nil, xxhash.Sum64(b))
}

// verifies reports whether scheme reproduces the id in the file.
func (im *elfImage) verifies(scheme string) bool {
	got, err := im.computeBuildID(scheme)
	return err == nil && bytes.Equal(got, im.buildID())
}

// detectScheme returns the scheme that reproduces the id in the file, or "".
func (im *elfImage) detectScheme() string {
	id := im.buildID()
	if id == nil {
		return ""
	}
	for _, s := range []string{schemeGNUSHA1, schemeLLDSHA1, schemeGNUMD5, schemeLLDMD5, schemeLLDFast} {
		if im.verifies(s) {
			return s
		}
	}
	return ""
}

// gnuHash follows binutils' elf_checksum_contents: the ELF header without
// table offsets, the program headers, then each section header without its
// offset followed by the contents bfd holds, with the build-id note zero as
// it was when the hash ran.
func (im *elfImage) gnuHash(h hash.Hash) []byte {
	eh := bytes.Clone(im.data[:im.ehsize])
	if im.is64 {
		clear(eh[32:48])
	} else {
		clear(eh[28:36])
	}
	h.Write(eh)
	h.Write(im.data[im.phoff : im.phoff+uint64(im.phnum*im.phentsize)])
	for i, s := range im.sections {
		sh := bytes.Clone(s.header)
		if im.is64 {
			clear(sh[24:32])
		} else {
			clear(sh[16:20])
		}
		h.Write(sh)
		if !s.hashedByGNU {
			continue
		}
		c := im.contents(s)
		if i == im.idSection {
			c = make([]byte, len(c))
		}
		h.Write(c)
	}
	return h.Sum(nil)
}

// lldHash follows LLD's computeHash: the whole file with the descriptor
// zero, hashed in 1 MiB chunks, then the hash of the chunk hashes.
func (im *elfImage) lldHash(sum func([]byte) []byte) []byte {
	const chunk = 1 << 20
	file := bytes.Clone(im.data)
	clear(file[im.descOff : im.descOff+im.descSize])
	var sums []byte
	for len(file) > 0 {
		n := min(chunk, len(file))
		sums = append(sums, sum(file[:n])...)
		file = file[n:]
	}
	return sum(sums)
}

// sectionAt names the section holding a file offset, for explanations.
func (im *elfImage) sectionAt(off int64) string {
	for _, s := range im.sections {
		if s.typ != elf.SHT_NOBITS && s.size > 0 && uint64(off) >= s.offset && uint64(off) < s.offset+s.size {
			return s.name
		}
	}
	return ""
}

func (im *elfImage) hasSection(name string) bool {
	for _, s := range im.sections {
		if s.name == name {
			return true
		}
	}
	return false
}

// Package buildid reads what the rewrite packages need of an ELF file
// straight from its bytes (its sections, its GNU build-id note) and
// recomputes the build-id as GNU ld and LLD do, so that a file whose bytes a
// rewrite changed gets the id its linker would give it. rewrite applies it,
// learnmap finds the scheme of each file and the sections that differ,
// unexplained looks for sections and ids in the outputs.
package buildid

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
	SchemeGNUSHA1 = "gnu-sha1" // GNU ld --build-id / =sha1
	SchemeGNUMD5  = "gnu-md5"  // GNU ld --build-id=md5
	SchemeLLDSHA1 = "lld-sha1" // LLD --build-id=sha1
	SchemeLLDMD5  = "lld-md5"  // LLD --build-id=md5
	SchemeLLDFast = "lld-fast" // LLD --build-id / =fast (xxHash64)
	// SchemeCarried: a stripped file keeps the id of its linker output;
	// the new id is taken from that file's recomputed id.
	SchemeCarried = "carried"
)

// ntGNUBuildID is the note type of a build-id (debug/elf lacks it).
const ntGNUBuildID = 3

var errNoBuildID = errors.New("no GNU build-id note")

// Image is the little of an ELF file the build-id algorithms need.
type Image struct {
	data      []byte
	order     binary.ByteOrder
	is64      bool
	ehsize    int
	phoff     uint64
	phentsize int
	phnum     int
	Sections  []Section
	idSection int // index of the section holding the build-id note, -1 if none
	noteOff   int // file offset of the build-id note header
	noteEnd   int // file offset just past the note (descriptor padded)
	DescOff   int // file offset of the descriptor (the id)
	DescSize  int
}

// Section is one section of an Image: its name, type and place in the file.
type Section struct {
	header []byte // the raw section header
	Name   string
	Type   elf.SectionType
	Offset uint64
	Size   uint64
	// hashedByGNU: bfd keeps a section object for it, so ld hashes its
	// contents; the symbol and string tables it writes itself are left out.
	hashedByGNU bool
}

// IsELF reports whether data is long enough and starts with the ELF magic.
func IsELF(data []byte) bool { return len(data) > 16 && bytes.HasPrefix(data, []byte(elf.ELFMAG)) }

// ParseELF reads the headers straight from the bytes: the GNU algorithm
// hashes them in their on-disk form.
func ParseELF(data []byte) (*Image, error) {
	if !IsELF(data) {
		return nil, errors.New("not an ELF file")
	}
	im := &Image{data: data, idSection: -1}
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
				shnum = int(s0.Size)
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
			im.Sections = append(im.Sections, im.section(h))
		}
	}
	im.markHashed(shstrndx)
	im.findBuildID()
	return im, nil
}

func (im *Image) section(h []byte) Section {
	o := im.order
	s := Section{header: h, Type: elf.SectionType(o.Uint32(h[4:]))}
	if im.is64 {
		s.Offset, s.Size = o.Uint64(h[24:]), o.Uint64(h[32:])
	} else {
		s.Offset, s.Size = uint64(o.Uint32(h[16:])), uint64(o.Uint32(h[20:]))
	}
	return s
}

func (im *Image) link(h []byte) uint32 {
	if im.is64 {
		return im.order.Uint32(h[40:])
	}
	return im.order.Uint32(h[24:])
}

// Contents are the bytes of a section in the file (nil for none).
func (im *Image) Contents(s Section) []byte {
	if s.Type == elf.SHT_NOBITS || s.Offset+s.Size > uint64(len(im.data)) {
		return nil
	}
	return im.data[s.Offset : s.Offset+s.Size]
}

// markHashed names the sections and decides which contents GNU ld hashes.
func (im *Image) markHashed(shstrndx int) {
	skip := map[int]bool{0: true, shstrndx: true}
	for i, s := range im.Sections {
		switch s.Type {
		case elf.SHT_SYMTAB:
			skip[i] = true
			skip[int(im.link(s.header))] = true
		case elf.SHT_SYMTAB_SHNDX:
			skip[i] = true
		}
	}
	var names []byte
	if shstrndx > 0 && shstrndx < len(im.Sections) {
		names = im.Contents(im.Sections[shstrndx])
	}
	for i := range im.Sections {
		s := &im.Sections[i]
		s.hashedByGNU = !skip[i] && s.Type != elf.SHT_NOBITS
		off := int(im.order.Uint32(s.header[0:]))
		if off < len(names) {
			if end := bytes.IndexByte(names[off:], 0); end >= 0 {
				s.Name = string(names[off : off+end])
			}
		}
	}
}

// findBuildID locates the NT_GNU_BUILD_ID note, in the section headers or,
// for files without them, in the PT_NOTE segments.
func (im *Image) findBuildID() {
	for i, s := range im.Sections {
		if s.Type == elf.SHT_NOTE && im.scanNotes(s.Offset, s.Size) {
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

func (im *Image) scanNotes(off, size uint64) bool {
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
			im.DescOff, im.DescSize = int(desc), int(descsz)
			return true
		}
		pos = end
	}
	return false
}

// BuildID is the id in the file, nil without one.
func (im *Image) BuildID() []byte {
	if im.DescSize == 0 {
		return nil
	}
	return im.data[im.DescOff : im.DescOff+im.DescSize]
}

// ComputeBuildID hashes the file as the named scheme's linker did.
func (im *Image) ComputeBuildID(scheme string) ([]byte, error) {
	if im.DescSize == 0 {
		return nil, errNoBuildID
	}
	var id []byte
	switch scheme {
	case SchemeGNUSHA1:
		id = im.gnuHash(sha1.New())
	case SchemeGNUMD5:
		id = im.gnuHash(md5.New())
	case SchemeLLDSHA1:
		id = im.lldHash(func(b []byte) []byte { s := sha1.Sum(b); return s[:] })
	case SchemeLLDMD5:
		id = im.lldHash(func(b []byte) []byte { s := md5.Sum(b); return s[:] })
	case SchemeLLDFast:
		id = im.lldHash(lldFastChunkHash)
	default:
		return nil, errors.New("unknown build-id scheme " + scheme)
	}
	if len(id) < im.DescSize {
		return nil, errors.New("build-id longer than the " + scheme + " hash")
	}
	return id[:im.DescSize], nil
}

// lldFastChunkHash is the chunk hash of LLD's default ("fast") build-id:
// XXH64 with seed 0, stored little-endian.
func lldFastChunkHash(b []byte) []byte {
	return binary.LittleEndian.AppendUint64(nil, xxhash.Sum64(b))
}

// Verifies reports whether scheme reproduces the id in the file.
func (im *Image) Verifies(scheme string) bool {
	got, err := im.ComputeBuildID(scheme)
	return err == nil && bytes.Equal(got, im.BuildID())
}

// DetectScheme returns the scheme that reproduces the id in the file, or "".
func (im *Image) DetectScheme() string {
	id := im.BuildID()
	if id == nil {
		return ""
	}
	for _, s := range []string{SchemeGNUSHA1, SchemeLLDSHA1, SchemeGNUMD5, SchemeLLDMD5, SchemeLLDFast} {
		if im.Verifies(s) {
			return s
		}
	}
	return ""
}

// gnuHash follows binutils' elf_checksum_contents: the ELF header without
// table offsets, the program headers, then each section header without its
// offset followed by the contents bfd holds, with the build-id note zero as
// it was when the hash ran.
func (im *Image) gnuHash(h hash.Hash) []byte {
	eh := bytes.Clone(im.data[:im.ehsize])
	if im.is64 {
		clear(eh[32:48])
	} else {
		clear(eh[28:36])
	}
	h.Write(eh)
	h.Write(im.data[im.phoff : im.phoff+uint64(im.phnum*im.phentsize)])
	for i, s := range im.Sections {
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
		c := im.Contents(s)
		if i == im.idSection {
			c = make([]byte, len(c))
		}
		h.Write(c)
	}
	return h.Sum(nil)
}

// lldHash follows LLD's computeHash: the whole file with the descriptor
// zero, hashed in 1 MiB chunks, then the hash of the chunk hashes.
func (im *Image) lldHash(sum func([]byte) []byte) []byte {
	const chunk = 1 << 20
	file := bytes.Clone(im.data)
	clear(file[im.DescOff : im.DescOff+im.DescSize])
	var sums []byte
	for len(file) > 0 {
		n := min(chunk, len(file))
		sums = append(sums, sum(file[:n])...)
		file = file[n:]
	}
	return sum(sums)
}

// SectionAt names the section holding a file offset, for explanations.
func (im *Image) SectionAt(off int64) string {
	for _, s := range im.Sections {
		if s.Type != elf.SHT_NOBITS && s.Size > 0 && uint64(off) >= s.Offset && uint64(off) < s.Offset+s.Size {
			return s.Name
		}
	}
	return ""
}

// HasSection reports whether the file has a section of that name.
func (im *Image) HasSection(name string) bool {
	for _, s := range im.Sections {
		if s.Name == name {
			return true
		}
	}
	return false
}

// HasContents reports whether the file has a section of that name with
// bytes in the file.
func (im *Image) HasContents(name string) bool {
	for _, s := range im.Sections {
		if s.Name == name && s.Type != elf.SHT_NOBITS && s.Size > 0 {
			return true
		}
	}
	return false
}

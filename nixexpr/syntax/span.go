package syntax

import (
	"sort"
	"unicode/utf8"
)

// Span is a half-open byte range [Start, End) into the parsed source.
type Span struct {
	Start, End int
}

// Len returns the number of bytes covered.
func (s Span) Len() int { return s.End - s.Start }

// Contains reports whether offset lies inside the span (End is exclusive).
func (s Span) Contains(offset int) bool { return s.Start <= offset && offset < s.End }

// Position is a 0-based line/column location. Column counts bytes,
// UTF16Column counts UTF-16 code units, which is what LSP clients use by default.
type Position struct {
	Offset      int
	Line        int
	Column      int
	UTF16Column int
}

// LineIndex converts between byte offsets and line/column positions.
type LineIndex struct {
	src        []byte
	lineStarts []int // byte offset where each line begins
}

// NewLineIndex indexes the line starts of src. Lines end at '\n'; a
// preceding '\r' is treated as part of the line's content.
func NewLineIndex(src []byte) *LineIndex {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return &LineIndex{src: src, lineStarts: starts}
}

// Position converts a byte offset; offsets outside the source are clamped.
func (x *LineIndex) Position(offset int) Position {
	offset = max(0, min(offset, len(x.src)))
	line := x.line(offset)
	start := x.lineStarts[line]
	return Position{
		Offset:      offset,
		Line:        line,
		Column:      offset - start,
		UTF16Column: utf16Len(x.src[start:offset]),
	}
}

func (x *LineIndex) line(offset int) int {
	return sort.Search(len(x.lineStarts), func(i int) bool { return x.lineStarts[i] > offset }) - 1
}

// ByteColumn is the offset's byte column, cheaper than Position on long lines.
func (x *LineIndex) ByteColumn(offset int) int {
	offset = max(0, min(offset, len(x.src)))
	return offset - x.lineStarts[x.line(offset)]
}

// Offset converts a 0-based line and UTF-16 column back to a byte offset,
// clamping to the end of the line or source, as LSP asks servers to do.
func (x *LineIndex) Offset(line, utf16Column int) int {
	if line < 0 {
		return 0
	}
	if line >= len(x.lineStarts) {
		return len(x.src)
	}
	i := x.lineStarts[line]
	for units := 0; i < len(x.src) && x.src[i] != '\n'; {
		r, size := utf8.DecodeRune(x.src[i:])
		n := 1
		if r >= 0x10000 {
			n = 2
		}
		if units+n > utf16Column {
			break
		}
		units += n
		i += size
	}
	return i
}

func utf16Len(b []byte) int {
	n := 0
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

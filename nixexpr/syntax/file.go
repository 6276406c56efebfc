package syntax

// File is the result of parsing one Nix source buffer.
type File struct {
	Src         []byte
	Root        Node
	Diagnostics []Diagnostic
	Lines       *LineIndex
}

// Text returns the source text covered by span (clamped to the source).
func (f *File) Text(span Span) string {
	start := max(0, min(span.Start, len(f.Src)))
	end := max(start, min(span.End, len(f.Src)))
	return string(f.Src[start:end])
}

// Position converts a byte offset into a line/column position.
func (f *File) Position(offset int) Position { return f.Lines.Position(offset) }

package parser

import (
	"bytes"
	"strings"

	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

type lexMode uint8

const (
	modeCode lexMode = iota
	modeString
	modeIndString
	modePath
)

// lexFrame is one level of the lexer's mode stack: strings and paths contain
// code (interpolations), which contain strings again.
type lexFrame struct {
	mode       lexMode
	braceDepth int  // modeCode: open '{' not yet closed, so '}' can end an interpolation
	interp     bool // modeCode: this frame was opened by ${
	lineOnly   bool // string: recovering from an unterminated string; ends at newline
	indent     int  // string: indentation of the line the string starts on

	// Where the string began, to rewind to if it is never closed.
	start, tokenCount, diagCount, stackDepth int
}

const maxRewinds = 16

type lexer struct {
	src   []byte
	pos   int
	toks  []token
	diags []syntax.Diagnostic
	stack []lexFrame

	newline bool // a newline was skipped since the last token

	// guess ends strings before a line that looks like a binding indented no
	// deeper than the string's first line: in a broken buffer that is more
	// likely a half-typed string than string content.
	guess bool
	lines *syntax.LineIndex

	// Rewinds re-lex the rest of the buffer, so they are rationed to keep
	// lexing linear on hostile input; past the budget strings end at EOF.
	rewinds int

	// Ends of the last run of path and URI-scheme characters scanned, so
	// `a.b.c.d...` is not rescanned from every identifier in it.
	pathRun, schemeRun syntax.Span

	// Offsets of string openers that reached EOF unclosed: on the second
	// attempt they end at the end of their line so the rest of the buffer
	// is lexed as code again.
	lineOnly map[int]bool
}

func lex(src []byte, lines *syntax.LineIndex, guess bool) ([]token, []syntax.Diagnostic) {
	l := &lexer{src: src, newline: true, lineOnly: map[int]bool{}, guess: guess, lines: lines}
	l.stack = []lexFrame{{mode: modeCode}}
	for {
		if l.pos >= len(src) && l.rewindUnclosedString() {
			continue
		}
		top := &l.stack[len(l.stack)-1]
		switch top.mode {
		case modeCode:
			if l.pos >= len(src) {
				l.skipTrivia()
				for _, f := range l.stack {
					if f.mode == modeString || f.mode == modeIndString {
						l.errorf(f.start, len(src), "unterminated string")
					}
				}
				l.emit(tEOF, len(src), len(src))
				return l.toks, l.diags
			}
			l.lexCode()
		case modeString:
			l.lexString(top)
		case modeIndString:
			l.lexIndString(top)
		case modePath:
			l.lexPath()
		}
	}
}

// rewindUnclosedString rewinds to the outermost "..." string still open at
// EOF and marks it to be re-lexed as a single-line string: such strings are
// rarely multi-line, so the rest of the line is its likely end. An unclosed
// ”...” string simply runs to EOF, as its content is rarely code.
func (l *lexer) rewindUnclosedString() bool {
	if l.rewinds >= maxRewinds {
		return false
	}
	for _, f := range l.stack {
		if f.mode == modeString && !f.lineOnly {
			l.toks = l.toks[:f.tokenCount]
			l.diags = l.diags[:f.diagCount]
			l.stack = l.stack[:f.stackDepth]
			l.pos = f.start
			l.newline = false
			if f.tokenCount == 0 {
				l.newline = true
			} else {
				l.newline = bytes.IndexByte(l.src[l.toks[f.tokenCount-1].span.End:f.start], '\n') >= 0
			}
			l.lineOnly[f.start] = true
			l.rewinds++
			return true
		}
	}
	return false
}

func (l *lexer) emit(kind tokenKind, start, end int) {
	l.toks = append(l.toks, token{kind: kind, span: syntax.Span{Start: start, End: end}, lineStart: l.newline})
	l.newline = false
}

func (l *lexer) errorf(start, end int, msg string) {
	l.diags = append(l.diags, syntax.Diagnostic{Span: syntax.Span{Start: start, End: end}, Message: msg})
}

func (l *lexer) peekAt(i int) byte {
	if i < len(l.src) {
		return l.src[i]
	}
	return 0
}

// skipTrivia skips whitespace and comments, noting newlines.
func (l *lexer) skipTrivia() {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\n':
			l.newline = true
			l.pos++
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		case c == '/' && l.peekAt(l.pos+1) == '*':
			end := bytes.Index(l.src[l.pos+2:], []byte("*/"))
			if end < 0 {
				l.errorf(l.pos, len(l.src), "unterminated comment")
				l.pos = len(l.src)
				return
			}
			if bytes.IndexByte(l.src[l.pos:l.pos+2+end], '\n') >= 0 {
				l.newline = true
			}
			l.pos += 2 + end + 2
		default:
			return
		}
	}
}

func (l *lexer) push(f lexFrame) { l.stack = append(l.stack, f) }
func (l *lexer) pop()            { l.stack = l.stack[:len(l.stack)-1] }

func (l *lexer) lexCode() {
	l.skipTrivia()
	if l.pos >= len(l.src) {
		return
	}
	start := l.pos
	c := l.src[start]
	top := &l.stack[len(l.stack)-1]

	switch {
	case c == '"' || (c == '\'' && l.peekAt(start+1) == '\''):
		f := lexFrame{mode: modeString, start: start, tokenCount: len(l.toks),
			diagCount: len(l.diags), stackDepth: len(l.stack), lineOnly: l.lineOnly[start],
			indent: l.indentOfLine(start)}
		if c == '"' {
			l.emit(tStringOpen, start, start+1)
			l.pos++
		} else {
			f.mode = modeIndString
			l.emit(tIndOpen, start, start+2)
			l.pos += 2
		}
		l.push(f)
		return
	case c == '$' && l.peekAt(start+1) == '{':
		l.openInterp(start)
		return
	case c == '{':
		top.braceDepth++
	case c == '}':
		if top.braceDepth == 0 && top.interp {
			l.emit(tInterpClose, start, start+1)
			l.pos++
			l.pop()
			return
		}
		top.braceDepth = max(0, top.braceDepth-1)
	}

	if kind, end := l.matchWord(start); end > start {
		if kind == tPathOpen {
			l.emit(tPathOpen, start, start)
			l.push(lexFrame{mode: modePath})
			return
		}
		if kind == tIdent {
			if kw, ok := keywords[string(l.src[start:end])]; ok {
				kind = kw
			}
		}
		l.emit(kind, start, end)
		l.pos = end
		return
	}
	for n := 3; n >= 1; n-- {
		if start+n <= len(l.src) {
			if kind, ok := operators[string(l.src[start:start+n])]; ok {
				l.emit(kind, start, start+n)
				l.pos = start + n
				return
			}
		}
	}
	// One whole UTF-8 sequence, so the diagnostic never splits a character.
	end := start + 1
	for end < len(l.src) && l.src[end]&0xC0 == 0x80 {
		end++
	}
	l.emit(tIllegal, start, end)
	l.errorf(start, end, "unexpected character")
	l.pos = end
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}
func isDigit(c byte) bool     { return c >= '0' && c <= '9' }
func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '\'' || c == '-' }
func isPathChar(c byte) bool {
	return isIdentStart(c) || isDigit(c) || c == '.' || c == '-' || c == '+'
}
func isURISchemeChar(c byte) bool {
	return isIdentStart(c) && c != '_' || isDigit(c) || c == '+' || c == '-' || c == '.'
}
func isURIChar(c byte) bool {
	return isIdentStart(c) || isDigit(c) || strings.IndexByte("%/?:@&=+$,-_.!~*'", c) >= 0
}

// matchWord finds the longest identifier, number, path, search path or URI
// at start, as Nix's flex lexer does (so `a/b` is a path, `x:y` a URI).
func (l *lexer) matchWord(start int) (tokenKind, int) {
	s := l.src
	kind, best := tEOF, start
	consider := func(k tokenKind, end int) {
		if end > best {
			kind, best = k, end
		}
	}
	if isIdentStart(s[start]) {
		i := start + 1
		for i < len(s) && isIdentChar(s[i]) {
			i++
		}
		consider(tIdent, i)
	}
	if isDigit(s[start]) || s[start] == '.' && isDigit(l.peekAt(start+1)) {
		consider(l.matchNumber(start))
	}
	if l.pathStarts(start) {
		// The path's length is not needed: path mode lexes it. It only has to
		// win over the alternatives, which it always does when it starts here.
		consider(tPathOpen, len(s)+1)
	}
	if s[start] == '<' {
		i := start + 1
		for i < len(s) && (isPathChar(s[i]) || s[i] == '/' && isPathChar(l.peekAt(i+1))) {
			i++
		}
		if i > start+1 && l.peekAt(i) == '>' && isPathChar(s[start+1]) {
			consider(tSearchPath, i+1)
		}
	}
	if isIdentStart(s[start]) && s[start] != '_' {
		i := l.runEnd(&l.schemeRun, start, isURISchemeChar)
		if l.peekAt(i) == ':' {
			j := i + 1
			for j < len(s) && isURIChar(s[j]) {
				j++
			}
			if j > i+1 {
				consider(tURI, j)
			}
		}
	}
	return kind, best
}

func (l *lexer) matchNumber(start int) (tokenKind, int) {
	s := l.src
	i := start
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if l.peekAt(i) != '.' {
		return tInt, i
	}
	// Nix floats: [1-9][0-9]*\.[0-9]* or 0?\.[0-9]+, then an optional exponent.
	j := i + 1
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	nonZeroLead := i > start && s[start] != '0'
	zeroLead := i == start || i == start+1 && s[start] == '0'
	if !(nonZeroLead || zeroLead && j > i+1) {
		return tInt, i
	}
	if c := l.peekAt(j); c == 'e' || c == 'E' {
		k := j + 1
		if c := l.peekAt(k); c == '+' || c == '-' {
			k++
		}
		if isDigit(l.peekAt(k)) {
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			j = k
		}
	}
	return tFloat, j
}

// pathStarts reports whether a path literal (./a, a/b, /abs, ~/x, a/${b})
// begins at start.
func (l *lexer) pathStarts(start int) bool {
	s := l.src
	i := start
	if s[i] == '~' {
		return l.peekAt(i+1) == '/' && isPathChar(l.peekAt(i+2))
	}
	i = l.runEnd(&l.pathRun, start, isPathChar)
	if l.peekAt(i) != '/' {
		return false
	}
	next := l.peekAt(i + 1)
	return isPathChar(next) || next == '$' && l.peekAt(i+2) == '{'
}

// runEnd returns where the run of characters satisfying in that contains
// start ends, reusing the previous scan when start lies inside it.
func (l *lexer) runEnd(run *syntax.Span, start int, in func(byte) bool) int {
	if run.Start <= start && start < run.End {
		return run.End
	}
	i := start
	for i < len(l.src) && in(l.src[i]) {
		i++
	}
	*run = syntax.Span{Start: start, End: i}
	return i
}

// lexPath lexes the rest of a path literal: runs of path characters and
// slashes, with ${} interpolations.
func (l *lexer) lexPath() {
	s := l.src
	start := l.pos
	i := start
	if i < len(s) && s[i] == '~' && i == l.toks[len(l.toks)-1].span.Start {
		i++
	}
	for i < len(s) {
		c := s[i]
		if isPathChar(c) {
			i++
			continue
		}
		if c == '/' && (isPathChar(l.peekAt(i+1)) || l.peekAt(i+1) == '$' && l.peekAt(i+2) == '{') {
			i++
			continue
		}
		break
	}
	if i > start {
		l.emit(tText, start, i)
	}
	l.pos = i
	if l.peekAt(i) == '$' && l.peekAt(i+1) == '{' {
		l.openInterp(i)
		return
	}
	l.emit(tPathClose, i, i)
	l.pop()
}

// openInterp emits the ${ at i and lexes code until its closing }.
func (l *lexer) openInterp(i int) {
	l.emit(tInterpOpen, i, i+2)
	l.pos = i + 2
	l.push(lexFrame{mode: modeCode, interp: true})
}

// lexString lexes the body of a "..." string up to its end or next ${.
func (l *lexer) lexString(f *lexFrame) {
	s := l.src
	start := l.pos
	i := start
	for i < len(s) {
		c := s[i]
		if c == '"' || c == '\n' && (f.lineOnly || l.guessEndsString(f, i)) {
			break
		}
		if c == '\\' {
			i += 2
			continue
		}
		if c == '$' && l.peekAt(i+1) == '$' {
			i += 2
			continue
		}
		if c == '$' && l.peekAt(i+1) == '{' && !f.lineOnly {
			break
		}
		i++
	}
	i = min(i, len(s))
	if i > start {
		l.emit(tText, start, i)
	}
	l.pos = i
	switch {
	case i < len(s) && s[i] == '"':
		l.emit(tStringClose, i, i+1)
		l.pos = i + 1
		l.pop()
	case i < len(s) && s[i] == '$':
		l.openInterp(i)
	case f.lineOnly || i < len(s) || l.rewinds >= maxRewinds:
		l.errorf(f.start, i, "unterminated string")
		l.emit(tStringClose, i, i)
		l.pop()
	}
	// Otherwise EOF: the main loop rewinds to this string's opener.
}

// lexIndString lexes the body of an ”...” string. Escapes become their own
// tokens because they do not take part in indentation stripping.
func (l *lexer) lexIndString(f *lexFrame) {
	s := l.src
	start := l.pos
	i := start
	flush := func() {
		if i > start {
			l.emit(tText, start, i)
		}
	}
	for i < len(s) {
		c := s[i]
		if c == '\n' && (f.lineOnly || l.guessEndsString(f, i)) {
			break
		}
		if c == '\'' && l.peekAt(i+1) == '\'' {
			switch l.peekAt(i + 2) {
			case '\'', '$':
				flush()
				l.emit(tEscape, i, i+3)
				l.pos = i + 3
				return
			case '\\':
				if i+3 < len(s) {
					flush()
					end := i + 4
					for end < len(s) && s[end]&0xC0 == 0x80 {
						end++
					}
					l.emit(tEscape, i, end)
					l.pos = end
					return
				}
			}
			flush()
			l.emit(tIndClose, i, i+2)
			l.pos = i + 2
			l.pop()
			return
		}
		if c == '$' && l.peekAt(i+1) == '$' {
			i += 2
			continue
		}
		if c == '$' && l.peekAt(i+1) == '{' && !f.lineOnly {
			flush()
			l.openInterp(i)
			return
		}
		i++
	}
	i = min(i, len(s))
	flush()
	l.pos = i
	l.errorf(f.start, i, "unterminated indented string")
	l.emit(tIndClose, i, i)
	l.pop()
}

// indentOfLine counts the blanks that begin the line containing offset.
func (l *lexer) indentOfLine(offset int) int {
	start := offset - l.lines.ByteColumn(offset)
	n := 0
	for start+n < offset && (l.src[start+n] == ' ' || l.src[start+n] == '\t') {
		n++
	}
	return n
}

// guessEndsString decides, in guess mode, whether the string f should end at
// the newline at nl because the next line looks like the next binding.
func (l *lexer) guessEndsString(f *lexFrame, nl int) bool {
	if !l.guess {
		return false
	}
	i := nl + 1
	indent := 0
	for i < len(l.src) && (l.src[i] == ' ' || l.src[i] == '\t') {
		i++
		indent++
	}
	if indent > f.indent || i >= len(l.src) || !isIdentStart(l.src[i]) {
		return false
	}
	j := i
	for j < len(l.src) && (isIdentChar(l.src[j]) || l.src[j] == '.') {
		j++
	}
	if string(l.src[i:j]) == "inherit" {
		return true
	}
	for j < len(l.src) && (l.src[j] == ' ' || l.src[j] == '\t') {
		j++
	}
	return l.peekAt(j) == '=' && l.peekAt(j+1) != '='
}

// Package parser turns a Nix source buffer into a syntax.File. It never
// fails: a broken, half-edited buffer still yields a tree of its intact
// parts, with diagnostics and Bad nodes for the rest. The language server
// parses every buffer it is sent with it.
package parser

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/nixlayer/nixlayer/nixexpr/syntax"
)

// maxDepth bounds expression nesting so hostile input cannot exhaust the stack.
const maxDepth = 1000

// Parse parses src. It never fails: syntax errors become Diagnostics and
// missing pieces become *Bad nodes, so intact parts of a half-edited buffer
// are still in the tree.
func Parse(src []byte) *syntax.File {
	lines := syntax.NewLineIndex(src)
	toks, lexDiags := lex(src, lines, false)
	p := newParser(src, lines, toks, false)
	root := p.parseFile()
	if len(p.diags)+len(lexDiags) > 0 {
		// The buffer is broken. Reparse guessing where the breakage ends: a
		// string or attribute set ends before a binding indented no deeper
		// than its start, so an unclosed { or " does not swallow the rest.
		toks, lexDiags = lex(src, lines, true)
		p = newParser(src, lines, toks, true)
		root = p.parseFile()
	}
	diags := append(lexDiags, p.diags...)
	sort.SliceStable(diags, func(i, j int) bool { return diags[i].Span.Start < diags[j].Span.Start })
	return &syntax.File{
		Src:         src,
		Root:        root,
		Diagnostics: diags,
		Lines:       lines,
	}
}

type parser struct {
	src   []byte
	toks  []token
	pos   int
	diags []syntax.Diagnostic
	depth int

	// open lists the closers (}, ], ), in, interpolation }) expected by the
	// constructs being parsed, so a stray closer can be told from a missing one.
	open []tokenKind

	// guessUnclosed enables the indentation heuristic for unclosed braces.
	guessUnclosed bool
	lines         *syntax.LineIndex
}

func newParser(src []byte, lines *syntax.LineIndex, toks []token, guessUnclosed bool) *parser {
	return &parser{src: src, toks: toks, guessUnclosed: guessUnclosed, lines: lines}
}

func (p *parser) parseFile() syntax.Node {
	root := p.parseExpr()
	for p.peek().kind != tEOF {
		t := p.peek()
		p.errorAt(t.span, fmt.Sprintf("unexpected %s after expression", t.kind))
		p.next()
	}
	return root
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) peekAt(n int) token {
	if p.pos+n < len(p.toks) {
		return p.toks[p.pos+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// prevEnd is the end offset of the last consumed token.
func (p *parser) prevEnd() int {
	if p.pos == 0 {
		return 0
	}
	return p.toks[p.pos-1].span.End
}

func (p *parser) pushOpen(closer tokenKind) { p.open = append(p.open, closer) }
func (p *parser) popOpen()                  { p.open = p.open[:len(p.open)-1] }

func (p *parser) isOpen(closer tokenKind) bool {
	for _, k := range p.open {
		if k == closer {
			return true
		}
	}
	return false
}

func (p *parser) errorAt(span syntax.Span, msg string) {
	if n := len(p.diags); n > 0 && p.diags[n-1].Span.Start == span.Start {
		return // one report per place is enough
	}
	p.diags = append(p.diags, syntax.Diagnostic{Span: span, Message: msg})
}

// expect consumes a token of the given kind or reports it missing.
func (p *parser) expect(kind tokenKind) bool {
	if p.peek().kind == kind {
		p.next()
		return true
	}
	p.errorExpected(kind.String())
	return false
}

func (p *parser) errorExpected(what string) {
	t := p.peek()
	span := t.span
	if t.kind == tEOF || t.lineStart {
		// Point at the end of what came before: that is where it is missing.
		span = syntax.Span{Start: p.prevEnd(), End: p.prevEnd()}
	}
	p.errorAt(span, fmt.Sprintf("expected %s, found %s", what, t.kind))
}

func (p *parser) bad() *syntax.Bad {
	return &syntax.Bad{Loc: syntax.Span{Start: p.prevEnd(), End: p.prevEnd()}}
}

// exprAfter parses the expression that follows kind (a keyword such as
// `in` or `then`, or the `;` or `:` before a body); where kind is missing
// it reports so and gives a Bad node instead.
func (p *parser) exprAfter(kind tokenKind) syntax.Node {
	if !p.expect(kind) {
		return p.bad()
	}
	return p.parseExpr()
}

func (p *parser) text(s syntax.Span) string { return string(p.src[s.Start:s.End]) }

// skipAttrName returns the index after the attribute name starting at i, or -1.
func (p *parser) skipAttrName(i int) int {
	if i >= len(p.toks) {
		return -1
	}
	switch p.toks[i].kind {
	case tIdent, tOrKw:
		return i + 1
	case tStringOpen, tInterpOpen:
		depth := 0
		for ; i < len(p.toks); i++ {
			switch p.toks[i].kind {
			case tStringOpen, tInterpOpen:
				depth++
			case tStringClose, tInterpClose:
				depth--
				if depth == 0 {
					return i + 1
				}
			case tEOF:
				return -1
			}
		}
	}
	return -1
}

// startsBinding reports whether tokens from i look like `a.b."c" =`. That
// can never continue an expression, so seeing it means a ; or ] is missing.
func (p *parser) startsBinding(i int) bool {
	for {
		i = p.skipAttrName(i)
		if i < 0 || i >= len(p.toks) {
			return false
		}
		switch p.toks[i].kind {
		case tAssign:
			return true
		case tDot:
			i++
		default:
			return false
		}
	}
}

// enter counts one level of nesting; past maxDepth it reports the error
// and returns the Bad node to give instead (the parser recurses, so depth
// bounds its stack). Every successful enter is paired with a leave.
func (p *parser) enter() syntax.Node {
	if p.depth >= maxDepth {
		t := p.next()
		p.errorAt(t.span, "expression nested too deeply")
		return &syntax.Bad{Loc: t.span}
	}
	p.depth++
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) parseExpr() syntax.Node {
	if bad := p.enter(); bad != nil {
		return bad
	}
	defer p.leave()

	t := p.peek()
	switch t.kind {
	case tLet:
		return p.parseLet()
	case tWith, tAssert:
		return p.parseWithOrAssert()
	case tIf:
		return p.parseIf()
	case tIdent:
		if k := p.peekAt(1).kind; k == tColon || k == tAt {
			return p.parseLambda()
		}
	case tLBrace:
		if p.startsFormals() {
			return p.parseLambda()
		}
	}
	if p.startsBinding(p.pos) {
		p.errorExpected("expression")
		return p.bad()
	}
	return p.parseBinary(0)
}

func (p *parser) parseLet() syntax.Node {
	start := p.next().span.Start
	p.pushOpen(tIn)
	bindings := p.parseBindings(tIn)
	p.popOpen()
	body := p.exprAfter(tIn)
	return &syntax.Let{Loc: syntax.Span{Start: start, End: p.prevEnd()}, Bindings: bindings, Body: body}
}

func (p *parser) parseWithOrAssert() syntax.Node {
	kw := p.next()
	first := p.parseExpr()
	body := p.exprAfter(tSemi)
	loc := syntax.Span{Start: kw.span.Start, End: p.prevEnd()}
	if kw.kind == tWith {
		return &syntax.With{Loc: loc, Env: first, Body: body}
	}
	return &syntax.Assert{Loc: loc, Cond: first, Body: body}
}

func (p *parser) parseIf() syntax.Node {
	start := p.next().span.Start
	n := &syntax.If{Cond: p.parseExpr()}
	n.Then = p.exprAfter(tThen)
	n.Else = p.exprAfter(tElse)
	n.Loc = syntax.Span{Start: start, End: p.prevEnd()}
	return n
}

// startsFormals decides whether the { at the cursor opens a lambda's set
// pattern rather than an attribute set.
func (p *parser) startsFormals() bool {
	isLambdaAfter := func(k tokenKind) bool { return k == tColon || k == tAt }
	switch p.peekAt(1).kind {
	case tRBrace:
		return isLambdaAfter(p.peekAt(2).kind)
	case tEllipsis:
		return true
	case tIdent:
		switch p.peekAt(2).kind {
		case tComma, tQuestion:
			return true
		case tRBrace:
			return isLambdaAfter(p.peekAt(3).kind)
		}
	}
	return false
}

func (p *parser) parseLambda() syntax.Node {
	start := p.peek().span.Start
	n := &syntax.Lambda{}
	if p.peek().kind == tIdent {
		n.Param = p.parseIdent()
		if p.atThen(tLBrace) {
			n.Formals = p.parseFormals()
		}
	} else {
		n.Formals = p.parseFormals()
		if p.atThen(tIdent) {
			n.Param = p.parseIdent()
		}
	}
	n.Body = p.exprAfter(tColon)
	n.Loc = syntax.Span{Start: start, End: p.prevEnd()}
	return n
}

// atThen consumes the `@` of a lambda pattern (`x @ { … }`, `{ … } @ x`)
// and reports whether the other half, a token of kind want, comes next;
// where it does not, it reports what was expected.
func (p *parser) atThen(want tokenKind) bool {
	if p.peek().kind != tAt {
		return false
	}
	p.next()
	if p.peek().kind != want {
		p.errorExpected(want.String())
		return false
	}
	return true
}

func (p *parser) parseIdent() *syntax.Ident {
	t := p.next()
	return &syntax.Ident{Loc: t.span, Name: p.text(t.span)}
}

func (p *parser) parseFormals() *syntax.Formals {
	start := p.next().span.Start // {
	f := &syntax.Formals{}
	for {
		t := p.peek()
		if t.kind == tRBrace {
			break
		}
		if t.kind == tEllipsis {
			p.next()
			f.Ellipsis = true
		} else if t.kind == tIdent {
			entry := syntax.Formal{Name: p.parseIdent()}
			if p.peek().kind == tQuestion {
				p.next()
				entry.Default = p.parseExpr()
			}
			f.Entries = append(f.Entries, entry)
		} else {
			p.errorExpected("formal parameter")
			break
		}
		if p.peek().kind != tComma {
			break
		}
		p.next()
	}
	p.expect(tRBrace)
	f.Loc = syntax.Span{Start: start, End: p.prevEnd()}
	return f
}

type opInfo struct {
	bp         int
	rightAssoc bool
}

// Binding powers follow the precedence table of the Nix manual.
const (
	bpAdd    = 10
	bpNegate = 14
)

// binaryOps holds each binary operator's binding power (higher binds
// tighter) and whether it groups to the right: one line a level, loosest
// first.
var binaryOps = map[tokenKind]opInfo{
	tPipeLeft:  {1, true},
	tPipeRight: {2, false},
	tImpl:      {3, true},
	tOr:        {4, false},
	tAnd:       {5, false},
	tEq:        {6, false}, tNeq: {6, false},
	tLt: {7, false}, tLe: {7, false}, tGt: {7, false}, tGe: {7, false},
	tUpdate: {8, true},
	// ! sits at 9: looser than + but tighter than //.
	tPlus: {bpAdd, false}, tMinus: {bpAdd, false},
	tStar: {11, false}, tSlash: {11, false},
	tConcat:   {12, true},
	tQuestion: {13, false},
}

func (p *parser) parseBinary(minBP int) syntax.Node {
	if bad := p.enter(); bad != nil {
		return bad
	}
	defer p.leave()

	var lhs syntax.Node
	switch t := p.peek(); t.kind {
	case tNot, tMinus:
		p.next()
		bp := bpAdd
		if t.kind == tMinus {
			bp = bpNegate
		}
		operand := p.parseBinary(bp)
		lhs = &syntax.Unary{Loc: syntax.Span{Start: t.span.Start, End: p.prevEnd()}, Op: t.kind.String(), Expr: operand}
	default:
		lhs = p.parseApply()
	}
	for {
		t := p.peek()
		info, ok := binaryOps[t.kind]
		if !ok || info.bp < minBP {
			return lhs
		}
		p.next()
		start := lhs.Span().Start
		if t.kind == tQuestion {
			path := p.parseAttrPath()
			lhs = &syntax.HasAttr{Loc: syntax.Span{Start: start, End: p.prevEnd()}, Expr: lhs, Path: path}
			continue
		}
		next := info.bp + 1
		if info.rightAssoc {
			next = info.bp
		}
		rhs := p.parseBinary(next)
		lhs = &syntax.Binary{Loc: syntax.Span{Start: start, End: p.prevEnd()}, Op: t.kind.String(), Left: lhs, Right: rhs}
	}
}

// startsOperand reports whether the cursor can begin a function argument or
// list element.
func (p *parser) startsOperand() bool {
	switch p.peek().kind {
	case tIdent, tInt, tFloat, tStringOpen, tIndOpen, tPathOpen, tSearchPath,
		tURI, tLParen, tLBracket, tLBrace, tRec:
		return !p.startsBinding(p.pos)
	}
	return false
}

func (p *parser) parseApply() syntax.Node {
	fn := p.parseSelect()
	for p.startsOperand() {
		arg := p.parseSelect()
		fn = &syntax.Apply{Loc: syntax.Span{Start: fn.Span().Start, End: p.prevEnd()}, Func: fn, Arg: arg}
	}
	return fn
}

func (p *parser) parseSelect() syntax.Node {
	e := p.parsePrimary()
	if p.peek().kind != tDot {
		return e
	}
	p.next()
	sel := &syntax.Select{Expr: e, Path: p.parseAttrPath()}
	if p.peek().kind == tOrKw {
		p.next()
		sel.Default = p.parseSelect()
	}
	sel.Loc = syntax.Span{Start: e.Span().Start, End: p.prevEnd()}
	return sel
}

func (p *parser) parseAttrPath() *syntax.AttrPath {
	path := &syntax.AttrPath{}
	for {
		path.Elems = append(path.Elems, p.parseAttrName())
		if p.peek().kind != tDot {
			break
		}
		p.next()
	}
	path.Loc = syntax.Span{Start: path.Elems[0].Span().Start, End: p.prevEnd()}
	return path
}

func (p *parser) parseAttrName() syntax.Node {
	switch p.peek().kind {
	case tIdent, tOrKw:
		return p.parseIdent()
	case tStringOpen, tIndOpen:
		return p.parseString()
	case tInterpOpen:
		start := p.next().span.Start
		e := p.parseInterpBody()
		return &syntax.Interp{Loc: syntax.Span{Start: start, End: p.prevEnd()}, Expr: e}
	}
	p.errorExpected("attribute name")
	return p.bad()
}

// parseInterpPart parses ${ expr } inside a string or path.
func (p *parser) parseInterpPart() syntax.StringPart {
	start := p.next().span.Start
	e := p.parseInterpBody()
	return syntax.StringPart{Loc: syntax.Span{Start: start, End: p.prevEnd()}, Interp: e}
}

// parseInterpBody parses the expression and closing } after a ${.
func (p *parser) parseInterpBody() syntax.Node {
	p.pushOpen(tInterpClose)
	e := p.parseExpr()
	p.popOpen()
	p.closeInterp()
	return e
}

// closeInterp consumes the } of a ${...}, skipping whatever the expression
// parser left over: the lexer always pairs ${ with a } unless at EOF.
func (p *parser) closeInterp() {
	if p.peek().kind == tInterpClose {
		p.next()
		return
	}
	p.errorExpected("}")
	depth := 0
	for {
		switch p.peek().kind {
		case tEOF:
			return
		case tInterpOpen:
			depth++
		case tInterpClose:
			if depth == 0 {
				p.next()
				return
			}
			depth--
		}
		p.next()
	}
}

func (p *parser) parsePrimary() syntax.Node {
	t := p.peek()
	switch t.kind {
	case tIdent:
		return p.parseIdent()
	case tInt:
		p.next()
		v, err := strconv.ParseInt(p.text(t.span), 10, 64)
		if err != nil {
			v = 0
			p.errorAt(t.span, "integer out of range")
		}
		return &syntax.Int{Loc: t.span, Value: v}
	case tFloat:
		p.next()
		v, _ := strconv.ParseFloat(p.text(t.span), 64)
		return &syntax.Float{Loc: t.span, Value: v}
	case tStringOpen, tIndOpen:
		return p.parseString()
	case tPathOpen:
		return p.parsePath()
	case tSearchPath:
		p.next()
		return &syntax.SearchPath{Loc: t.span, Name: p.text(syntax.Span{Start: t.span.Start + 1, End: t.span.End - 1})}
	case tURI:
		p.next()
		return &syntax.URI{Loc: t.span, Value: p.text(t.span)}
	case tLParen:
		p.next()
		p.pushOpen(tRParen)
		e := p.parseExpr()
		p.popOpen()
		p.expect(tRParen)
		return &syntax.Paren{Loc: syntax.Span{Start: t.span.Start, End: p.prevEnd()}, Expr: e}
	case tLBracket:
		return p.parseList()
	case tLBrace, tRec:
		return p.parseAttrSet()
	case tLet, tWith, tAssert, tIf:
		// Not allowed here by Nix's grammar, but parsing it keeps the tree useful.
		p.errorAt(t.span, fmt.Sprintf("%s expression must be parenthesized here", t.kind))
		return p.parseExpr()
	case tIllegal:
		p.next()
		return &syntax.Bad{Loc: t.span}
	}
	p.errorExpected("expression")
	return p.bad()
}

func (p *parser) parseList() syntax.Node {
	start := p.next().span.Start
	list := &syntax.List{}
	p.pushOpen(tRBracket)
	for p.startsOperand() {
		list.Elems = append(list.Elems, p.parseSelect())
	}
	p.popOpen()
	p.expect(tRBracket)
	list.Loc = syntax.Span{Start: start, End: p.prevEnd()}
	return list
}

func (p *parser) parseString() syntax.Node {
	open := p.next()
	s := &syntax.String{Indented: open.kind == tIndOpen}
	closeKind := tStringClose
	if s.Indented {
		closeKind = tIndClose
	}
	for {
		t := p.peek()
		switch t.kind {
		case tText:
			p.next()
			raw := p.text(t.span)
			if !s.Indented {
				raw = syntax.UnescapeString(raw)
			}
			s.Parts = append(s.Parts, syntax.StringPart{Loc: t.span, Text: raw})
			continue
		case tEscape:
			p.next()
			s.Parts = append(s.Parts, syntax.StringPart{Loc: t.span, Text: syntax.UnescapeIndented(p.text(t.span)), Escape: true})
			continue
		case tInterpOpen:
			s.Parts = append(s.Parts, p.parseInterpPart())
			continue
		case closeKind:
			p.next()
		default:
			p.errorExpected("end of string")
		}
		break
	}
	s.Loc = syntax.Span{Start: open.span.Start, End: p.prevEnd()}
	return s
}

func (p *parser) parsePath() syntax.Node {
	open := p.next()
	path := &syntax.Path{}
	for {
		t := p.peek()
		if t.kind == tText {
			p.next()
			path.Parts = append(path.Parts, syntax.StringPart{Loc: t.span, Text: p.text(t.span)})
			continue
		}
		if t.kind == tInterpOpen {
			path.Parts = append(path.Parts, p.parseInterpPart())
			continue
		}
		if t.kind == tPathClose {
			p.next()
		} else {
			p.errorExpected("end of path")
		}
		break
	}
	path.Loc = syntax.Span{Start: open.span.Start, End: p.prevEnd()}
	return path
}

func (p *parser) parseAttrSet() syntax.Node {
	start := p.peek().span.Start
	set := &syntax.AttrSet{}
	if p.peek().kind == tRec {
		set.Rec = true
		p.next()
		if p.peek().kind != tLBrace {
			p.errorExpected("{")
			set.Loc = syntax.Span{Start: start, End: p.prevEnd()}
			return set
		}
	}
	p.next()
	p.pushOpen(tRBrace)
	set.Bindings = p.parseBindings(tRBrace)
	p.popOpen()
	p.expect(tRBrace)
	set.Loc = syntax.Span{Start: start, End: p.prevEnd()}
	return set
}

// parseBindings parses attributes and inherits up to end (} or in).
func (p *parser) parseBindings(end tokenKind) []syntax.Binding {
	var out []syntax.Binding
	indent := -1 // column of bindings that start a line, for guessUnclosed
	for {
		t := p.peek()
		switch t.kind {
		case end, tEOF:
			return out
		case tRBrace, tIn, tRParen, tRBracket, tInterpClose:
			if p.isOpen(t.kind) {
				// It closes something enclosing us: our closer is missing,
				// which the caller reports.
				return out
			}
		}
		if t.lineStart {
			col := p.lines.ByteColumn(t.span.Start)
			if indent < 0 {
				indent = col
			} else if p.guessUnclosed && col < indent {
				return out
			}
		}
		before := p.pos
		var b syntax.Binding
		switch {
		case t.kind == tInherit:
			b = p.parseInherit()
		case p.skipAttrName(p.pos) >= 0:
			b = p.parseAttr()
		default:
			p.errorAt(t.span, fmt.Sprintf("unexpected %s, expected attribute", t.kind))
			p.syncBinding()
		}
		if b != nil {
			out = append(out, b)
		}
		if p.pos == before {
			p.next() // always make progress
		}
	}
}

// endBinding consumes the ; that ends a binding, tolerating a missing one
// when the next binding starts on a new line.
func (p *parser) endBinding() {
	if p.peek().kind == tSemi {
		p.next()
		return
	}
	p.errorExpected(";")
	if !p.peek().lineStart {
		p.syncBinding()
	}
}

// syncBinding skips to where the next binding probably starts: after a ;,
// before a closing }, or at a line that looks like `name =` or `inherit`.
func (p *parser) syncBinding() {
	depth := 0
	for {
		t := p.peek()
		if t.lineStart && (t.kind == tInherit || p.startsBinding(p.pos)) {
			return
		}
		switch t.kind {
		case tEOF:
			return
		case tSemi:
			if depth == 0 {
				p.next()
				return
			}
		case tLBrace, tLParen, tLBracket, tInterpOpen:
			depth++
		case tRBrace, tRParen, tRBracket, tInterpClose, tIn:
			if depth == 0 {
				return
			}
			if t.kind != tIn {
				depth--
			}
		}
		p.next()
	}
}

func (p *parser) parseAttr() syntax.Binding {
	start := p.peek().span.Start
	path := p.parseAttrPath()
	if p.peek().kind != tAssign {
		p.errorExpected("=")
		p.syncBinding()
		return nil
	}
	p.next()
	value := p.parseExpr()
	end := p.prevEnd()
	p.endBinding()
	if p.pos > 0 && p.toks[p.pos-1].kind == tSemi {
		end = p.prevEnd()
	}
	return &syntax.Attr{Loc: syntax.Span{Start: start, End: end}, Path: path, Value: value}
}

func (p *parser) parseInherit() syntax.Binding {
	start := p.next().span.Start
	n := &syntax.Inherit{}
	if p.peek().kind == tLParen {
		p.next()
		n.From = p.parseExpr()
		p.expect(tRParen)
	}
	for {
		k := p.peek().kind
		if k != tIdent && k != tOrKw && k != tStringOpen && k != tInterpOpen || p.startsBinding(p.pos) {
			break
		}
		n.Names = append(n.Names, p.parseAttrName())
	}
	end := p.prevEnd()
	p.endBinding()
	if p.toks[p.pos-1].kind == tSemi {
		end = p.prevEnd()
	}
	n.Loc = syntax.Span{Start: start, End: end}
	return n
}

package parser

import "github.com/nixlayer/nixlayer/nixexpr/syntax"

type tokenKind uint8

const (
	tEOF tokenKind = iota
	tIllegal
	tIdent
	tInt
	tFloat
	tURI
	tSearchPath  // <nixpkgs>
	tPathOpen    // zero-width: a path literal starts
	tPathClose   // zero-width: a path literal ends
	tStringOpen  // "
	tStringClose // " (zero-width when the string was never closed)
	tIndOpen     // ''
	tIndClose    // ''
	tText        // a literal run inside a string or path
	tEscape      // an indented-string escape: ''' ''$ ''\x
	tInterpOpen  // ${
	tInterpClose // the } ending ${

	tLBrace
	tRBrace
	tLBracket
	tRBracket
	tLParen
	tRParen
	tSemi
	tColon
	tComma
	tAt
	tDot
	tEllipsis
	tAssign
	tQuestion
	tPlus
	tMinus
	tStar
	tSlash
	tConcat
	tUpdate
	tNot
	tEq
	tNeq
	tLt
	tLe
	tGt
	tGe
	tAnd
	tOr
	tImpl
	tPipeRight
	tPipeLeft

	tIf
	tThen
	tElse
	tAssert
	tWith
	tLet
	tIn
	tRec
	tInherit
	tOrKw
)

var keywords = map[string]tokenKind{
	"if": tIf, "then": tThen, "else": tElse, "assert": tAssert, "with": tWith,
	"let": tLet, "in": tIn, "rec": tRec, "inherit": tInherit, "or": tOrKw,
}

// operators maps punctuation to its kind; the lexer tries longer ones first.
var operators = map[string]tokenKind{
	"...": tEllipsis, "${": tInterpOpen,
	"==": tEq, "!=": tNeq, "<=": tLe, ">=": tGe, "&&": tAnd, "||": tOr,
	"->": tImpl, "//": tUpdate, "++": tConcat, "|>": tPipeRight, "<|": tPipeLeft,
	"{": tLBrace, "}": tRBrace, "[": tLBracket, "]": tRBracket, "(": tLParen,
	")": tRParen, ";": tSemi, ":": tColon, ",": tComma, "@": tAt, ".": tDot,
	"=": tAssign, "?": tQuestion, "+": tPlus, "-": tMinus, "*": tStar,
	"/": tSlash, "!": tNot, "<": tLt, ">": tGt,
}

var tokenNames = map[tokenKind]string{
	tEOF: "end of file", tIllegal: "illegal character", tIdent: "identifier",
	tInt: "integer", tFloat: "float", tURI: "URI", tSearchPath: "search path",
	tPathOpen: "path", tPathClose: "end of path", tStringOpen: `"`, tStringClose: `"`,
	tIndOpen: "''", tIndClose: "''", tText: "string text", tEscape: "string escape",
	tInterpClose: "}",
}

func init() {
	for s, k := range operators {
		tokenNames[k] = s
	}
	for s, k := range keywords {
		tokenNames[k] = s
	}
}

func (k tokenKind) String() string { return tokenNames[k] }

type token struct {
	kind      tokenKind
	span      syntax.Span
	lineStart bool // first token on its line
}

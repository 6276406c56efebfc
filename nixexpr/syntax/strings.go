package syntax

import "strings"

// Literal returns the string's value when it has no interpolations,
// with escapes resolved and, for indented strings, indentation stripped as
// Nix does.
func (s *String) Literal() (string, bool) {
	for _, p := range s.Parts {
		if p.Interp != nil {
			return "", false
		}
	}
	if s.Indented {
		return stripIndentation(s.Parts), true
	}
	var b strings.Builder
	for _, p := range s.Parts {
		b.WriteString(p.Text)
	}
	return b.String(), true
}

// Literal returns the path text when it has no interpolations.
func (p *Path) Literal() (string, bool) {
	var b strings.Builder
	for _, part := range p.Parts {
		if part.Interp != nil {
			return "", false
		}
		b.WriteString(part.Text)
	}
	return b.String(), true
}

// UnescapeString resolves the backslash escapes of a "..." string body.
func UnescapeString(raw string) string {
	if !strings.Contains(raw, `\`) {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			b.WriteByte(c)
			continue
		}
		i++
		b.WriteString(unescapeChar(raw[i]))
	}
	return b.String()
}

func unescapeChar(c byte) string {
	switch c {
	case 'n':
		return "\n"
	case 'r':
		return "\r"
	case 't':
		return "\t"
	}
	return string([]byte{c})
}

// UnescapeIndented resolves one indented-string escape token: ”' ”$ ”\x.
func UnescapeIndented(raw string) string {
	switch {
	case raw == "'''":
		return "''"
	case raw == "''$":
		return "$"
	case strings.HasPrefix(raw, `''\`) && len(raw) == 4:
		return unescapeChar(raw[3])
	case strings.HasPrefix(raw, `''\`):
		return raw[3:] // a multi-byte character escapes to itself
	}
	return raw
}

// stripIndentation follows Nix's stripIndentation: drop a whitespace-only
// first line, remove the smallest indentation of the non-blank lines, and
// drop a trailing line that holds only spaces. Interpolations and escapes
// count as content and are never stripped.
func stripIndentation(parts []StringPart) string {
	if len(parts) > 0 && !parts[0].Escape && parts[0].Interp == nil {
		// Nix's lexer swallows `( *\n)?` right after the opening ''.
		t := parts[0].Text
		if i := strings.IndexByte(t, '\n'); i >= 0 && strings.Trim(t[:i], " ") == "" {
			parts = append([]StringPart{{Text: t[i+1:]}}, parts[1:]...)
		}
	}

	minIndent := int(^uint(0) >> 1)
	curIndent, atLineStart := 0, true
	for _, p := range parts {
		if p.Escape || p.Interp != nil {
			if atLineStart {
				atLineStart = false
				minIndent = min(minIndent, curIndent)
			}
			continue
		}
		for i := 0; i < len(p.Text); i++ {
			c := p.Text[i]
			switch {
			case atLineStart && c == ' ':
				curIndent++
			case atLineStart && c == '\n':
				curIndent = 0 // blank lines do not count
			case atLineStart:
				atLineStart = false
				minIndent = min(minIndent, curIndent)
			case c == '\n':
				atLineStart, curIndent = true, 0
			}
		}
	}

	var out strings.Builder
	dropped := 0
	atLineStart = true
	for n, p := range parts {
		if p.Escape || p.Interp != nil {
			atLineStart, dropped = false, 0
			out.WriteString(p.Text)
			continue
		}
		var s strings.Builder
		for i := 0; i < len(p.Text); i++ {
			c := p.Text[i]
			switch {
			case atLineStart && c == ' ':
				if dropped >= minIndent {
					s.WriteByte(c)
				}
				dropped++
			case atLineStart && c == '\n':
				dropped = 0
				s.WriteByte(c)
			case atLineStart:
				atLineStart, dropped = false, 0
				s.WriteByte(c)
			default:
				s.WriteByte(c)
				if c == '\n' {
					atLineStart = true
				}
			}
		}
		text := s.String()
		if n == len(parts)-1 {
			if i := strings.LastIndexByte(text, '\n'); i >= 0 && strings.Trim(text[i+1:], " ") == "" {
				text = text[:i+1]
			}
		}
		out.WriteString(text)
	}
	return out.String()
}

// Quote renders s as a Nix string literal ("…", with \, " and ${ escaped).
func Quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// Package logtail cuts a log to its last lines (or a message to its first), as error messages, the
// language server and the tests show a failed build's output.
package logtail

import "strings"

// Lines is the last n lines of s (all of s when it has fewer).
func Lines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FirstLine is s up to its first line break: a multi-line error in a
// one-line message.
func FirstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

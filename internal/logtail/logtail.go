// Package logtail cuts a log to its last lines (or a message to its first), as error messages, the
// language server and the tests show a failed build's output.
package logtail

import (
	"fmt"
	"strings"
)

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

// FirstFew joins the first n items with "; " and counts the rest, for a
// message that names a few of many files or attributes.
func FirstFew(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:n], "; ") + fmt.Sprintf("; and %d more", len(items)-n)
}

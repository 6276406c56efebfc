package fsname

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Whatever the string, the name is one plain path element of a fixed
// shape, and different strings get different names.
func TestForHostileStrings(t *testing.T) {
	shape := regexp.MustCompile(`^drv-[0-9a-f]{32}$`)
	hostile := []string{
		"", ".", "..", "../", "../../../../root/victim", "x/../../../../root/victim",
		"/", "/etc/passwd", "a/b", "nul\x00byte", "\x00", strings.Repeat("a", 4096),
		strings.Repeat("../", 1400), "new\nline", "hello-2.12",
	}
	seen := map[string]string{}
	for _, s := range hostile {
		name := For("drv", s)
		if !shape.MatchString(name) || filepath.Base(name) != name || filepath.Clean(name) != name {
			t.Errorf("For(%q) = %q: not one plain path element of the fixed shape", s, name)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("For(%q) and For(%q) are both %q", s, other, name)
		}
		seen[name] = s
		if For("drv", s) != name {
			t.Errorf("For(%q) is not stable", s)
		}
	}
	if For("learn", "x") == For("drv", "x") {
		t.Error("kinds do not separate names")
	}
}

package nixexpr

import (
	"strings"
	"testing"
	"time"
)

func TestPerfTmp(t *testing.T) {
	for _, unit := range []string{"\"${", "''${", "(", "[", "{", "a.", "\"a\n", "{a=\n", "x: ", "a ", "${", "\"\\", "{ \"${a}\"", "let ", "a = \"\n", "./a/${"} {
		src := strings.Repeat(unit, 20000)
		start := time.Now()
		Parse([]byte(src))
		t.Logf("%q x20000: %v", unit, time.Since(start))
	}
}

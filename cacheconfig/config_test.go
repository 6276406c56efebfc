package cacheconfig

import (
	"strings"
	"testing"
)

// The audit's rate: one resumed result in 20 unless config.json says
// otherwise, every one under CI=true; a bad value is named.
func TestAuditEvery(t *testing.T) {
	for _, c := range []struct {
		audit, ci string
		want      int
		bad       bool
	}{
		{"", "", defaultAuditEvery, false},
		{"", "true", 1, false},
		{"", "false", defaultAuditEvery, false},
		{"never", "true", 0, false},
		{"always", "", 1, false},
		{"1/5", "", 5, false},
		{"1/5", "true", 5, false},
		{"1/1", "", 1, false},
		{"2/5", "", 0, true},
		{"1/0", "", 0, true},
		{"sometimes", "", 0, true},
		{"5%", "", 0, true},
	} {
		cfg := &Config{Audit: c.audit}
		got, err := cfg.AuditEvery(func(k string) string {
			if k == "CI" {
				return c.ci
			}
			return ""
		})
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), "config.json audit") {
				t.Errorf("audit %q: error %v, want one naming the setting", c.audit, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("audit %q with CI=%q: every %d (%v), want %d", c.audit, c.ci, got, err, c.want)
		}
	}
}

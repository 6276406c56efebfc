package nixstore

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// NixVersion is an installed Nix release.
type NixVersion struct {
	Major, Minor, Patch int
	Text                string
}

func (v NixVersion) String() string { return v.Text }

// AtLeast compares with major.minor.
func (v NixVersion) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// AtLeastPatch compares with major.minor.patch.
func (v NixVersion) AtLeastPatch(major, minor, patch int) bool {
	if v.Major != major || v.Minor != minor {
		return v.AtLeast(major, minor)
	}
	return v.Patch >= patch
}

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)(?:\.(\d+))?`)

// InstalledNix runs `nix --version`.
func InstalledNix(ctx context.Context) (NixVersion, error) {
	out, err := exec.CommandContext(ctx, "nix", "--version").Output()
	if err != nil {
		return NixVersion{}, fmt.Errorf("running nix --version: %w (is Nix installed and on PATH?)", err)
	}
	return ParseNixVersion(string(out))
}

// ParseNixVersion reads the output of `nix --version`.
func ParseNixVersion(s string) (NixVersion, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return NixVersion{}, fmt.Errorf("cannot read a version from %q", strings.TrimSpace(s))
	}
	v := NixVersion{Text: strings.TrimSpace(s)}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

package hook

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlayer/nixlayer/nixstore"
)

// NixVersion is an installed Nix release (nixstore.NixVersion).
type NixVersion = nixstore.NixVersion

// InstalledNix runs `nix --version`.
func InstalledNix(ctx context.Context) (NixVersion, error) { return nixstore.InstalledNix(ctx) }

// Setup describes the Nix configuration that enables hook mode.
type Setup struct {
	Binary     string // absolute path of nixlayer
	HooksDir   string // where the pre/post-build-hook wrappers go
	ConfFile   string // nix.conf to edit
	WithRecord bool   // also set pre-/post-build-hook
}

const confMarker = "# nixlayer: hook mode (written by nixlayer setup-nix)"

// ConfLines are the nix.conf lines. build-hook is a lone path: Nix 2.8
// takes a single path and passes only the verbosity, and newer Nix reads
// it as a one-element list and appends the verbosity, so the same line
// works everywhere (nixlayer treats a lone number as hook mode).
func (s Setup) ConfLines() []string {
	lines := []string{confMarker, "build-hook = " + s.Binary}
	if s.WithRecord {
		lines = append(lines,
			"pre-build-hook = "+filepath.Join(s.HooksDir, "pre-build-hook"),
			"post-build-hook = "+filepath.Join(s.HooksDir, "post-build-hook"))
	}
	return lines
}

// WriteWrappers writes the pre/post-build-hook wrappers: Nix runs those
// settings as plain programs, with no room for a subcommand word.
func (s Setup) WriteWrappers() error {
	if err := os.MkdirAll(s.HooksDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", s.HooksDir, err)
	}
	for _, name := range []string{"pre-build-hook", "post-build-hook"} {
		script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", shQuote(s.Binary), name)
		if err := os.WriteFile(filepath.Join(s.HooksDir, name), []byte(script), 0o755); err != nil {
			return fmt.Errorf("writing the %s wrapper: %w", name, err)
		}
	}
	return nil
}

// Conflicts lists settings in the conf file that nixlayer's lines would
// fight with (a build-hook or pre/post-build-hook set by someone else).
func (s Setup) Conflicts() ([]string, error) {
	f, err := os.Open(s.ConfFile)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ours := map[string]bool{}
	for _, l := range s.ConfLines() {
		ours[l] = true
	}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, _, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || ours[line] {
			continue
		}
		switch name {
		case "build-hook", "pre-build-hook", "post-build-hook":
			if s.WithRecord || name == "build-hook" {
				out = append(out, line)
			}
		}
	}
	return out, sc.Err()
}

// Apply appends the lines to the conf file unless they are already there.
func (s Setup) Apply() (changed bool, err error) {
	data, err := os.ReadFile(s.ConfFile)
	if err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("reading %s: %w", s.ConfFile, err)
	}
	if strings.Contains(string(data), strings.Join(s.ConfLines(), "\n")) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(s.ConfFile), 0o755); err != nil {
		return false, err
	}
	text := string(data)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	text += "\n" + strings.Join(s.ConfLines(), "\n") + "\n"
	if err := os.WriteFile(s.ConfFile, []byte(text), 0o644); err != nil {
		return false, fmt.Errorf("writing %s: %w", s.ConfFile, err)
	}
	return true, nil
}

// VersionNotes explains what a Nix version needs.
func VersionNotes(v NixVersion) []string {
	var notes []string
	if !v.AtLeast(2, 4) {
		notes = append(notes, "Nix before 2.4 sends output paths instead of names and is not supported; upgrade Nix.")
	}
	if v.AtLeast(2, 25) && !v.AtLeast(2, 34) {
		notes = append(notes,
			"Nix 2.25–2.33 ignore build-hook in /etc/nix/nix.conf (fixed in 2.34). Set it another way:",
			"  NIX_CONFIG='build-hook = BINARY' in the environment of nix-build / the nix-daemon,",
			"  or the user's ~/.config/nix/nix.conf, or --option build-hook BINARY on the command line.")
	}
	if v.AtLeast(2, 32) {
		notes = append(notes, "Nix 2.32+ also has the experimental external-builders setting; nixlayer uses build-hook.")
	}
	return notes
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

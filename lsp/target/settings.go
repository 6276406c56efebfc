// Package target finds and evaluates the target of a buffer, knowing
// nothing of LSP: the settings' target, else what the layout says builds
// the buffer's file (a nixpkgs checkout's attribute, a flake's outputs by
// the files that define them, the file itself; several to choose from),
// instantiated with the buffer's unsaved text where the layout allows,
// its derivations paired with the buffer's derivation calls and planned by
// the engine (api.Service). Its input is a buffer's path and text and the
// workspace the editor described (folders, settings, the targets chosen);
// its output an Evaluation, immutable, which the language server (package
// lsp) keeps per buffer and the analysis and the lenses read.
package target

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/nixlayer/nixlayer/nixstore"
)

// Settings are the server's settings, from initializationOptions or
// workspace/didChangeConfiguration, either bare or under a "nixlayer" key:
//
//	{"target": {"file": "default.nix", "attr": "hello", "args": {"n": "20"}, "argstrs": {"salt": "x"}}}
//	{"target": {"expr": "(import ./. {}).hello"}}
//	{"target": {"flake": ".#hello"}}
//
// Without a target the server finds one (discover.go): in a nixpkgs
// checkout or a flake the attribute that builds the buffer's file, else
// the file itself (nix-instantiate FILE): it fits a file that evaluates to
// a derivation, or to a set of derivations whose pnames name the calls in
// the file.
type Settings struct {
	Target *Target `json:"target,omitempty"`
	// Trusted false (VS Code's Restricted Mode) stops every evaluation and
	// build: evaluating a .nix file runs its code and can build (import
	// from derivation). Unset means trusted; once set, only an explicit
	// value changes it.
	Trusted *bool `json:"trusted,omitempty"`
}

// trusted tells whether the client trusts the workspace.
func (st Settings) trusted() bool { return st.Trusted == nil || *st.Trusted }

// Target says what to evaluate for a buffer.
type Target struct {
	// File is relative to the workspace folder holding the buffer.
	// Flake is a flake reference (.#hello, path:/src#hello); a path-like
	// one is relative to the workspace folder.
	Flake   string            `json:"flake,omitempty"`
	File    string            `json:"file,omitempty"`
	Attr    string            `json:"attr,omitempty"`
	Expr    string            `json:"expr,omitempty"`
	Args    map[string]string `json:"args,omitempty"`
	ArgStrs map[string]string `json:"argstrs,omitempty"`
}

// empty tells whether the target sets nothing (as if there were none).
func (t Target) empty() bool {
	return t.Flake == "" && t.File == "" && t.Attr == "" && t.Expr == "" && len(t.Args) == 0 && len(t.ArgStrs) == 0
}

// Nix is the target as package nixstore instantiates it.
func (t Target) Nix() nixstore.Target {
	// The editor looks at a flake: it does not write the flake's lock file.
	return nixstore.Target{Flake: t.Flake, KeepLockFile: t.Flake != "", File: t.File, Attr: t.Attr, Expr: t.Expr, Args: t.Args, ArgStrs: t.ArgStrs}
}

// ParseSettings reads settings; malformed or empty input keeps old.
func ParseSettings(raw json.RawMessage, old Settings) Settings {
	if len(raw) == 0 || string(raw) == "null" {
		return old
	}
	var nested struct {
		Nixlayer *Settings `json:"nixlayer"`
	}
	var s Settings
	switch {
	case json.Unmarshal(raw, &nested) == nil && nested.Nixlayer != nil:
		s = *nested.Nixlayer
	case json.Unmarshal(raw, &s) != nil:
		return old
	}
	if s.Trusted == nil {
		s.Trusted = old.Trusted
	}
	return s
}

// targetFor resolves the target of a buffer at path in folder.
func (st Settings) targetFor(path, folder string) Target {
	if st.Target == nil || (st.Target.File == "" && st.Target.Expr == "" && st.Target.Flake == "") {
		t := Target{File: path}
		if st.Target != nil {
			t.Attr, t.Args, t.ArgStrs = st.Target.Attr, st.Target.Args, st.Target.ArgStrs
		}
		return t
	}
	t := *st.Target
	if t.File != "" && !filepath.IsAbs(t.File) {
		t.File = filepath.Join(folder, t.File)
	}
	if t.Flake != "" && !nixstore.HasURLScheme(t.Flake) && !filepath.IsAbs(t.Flake) {
		dir, frag, hasFrag := strings.Cut(t.Flake, "#") // .#hello: the folder's flake
		t.Flake = filepath.Join(folder, dir)
		if hasFrag {
			t.Flake += "#" + frag
		}
	}
	return t
}

package target

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nixlayer/nixlayer/nixexpr"
	"github.com/nixlayer/nixlayer/nixexpr/parser"
	"github.com/nixlayer/nixlayer/nixexpr/syntax"
	"github.com/nixlayer/nixlayer/nixstore"
)

// This file finds what to evaluate for a buffer when the settings name no
// target, in the layouts Nix users have: a nixpkgs checkout (its by-name
// packages by their directory, others through the callPackage of
// all-packages.nix that names the file), a flake (the packages whose
// derivation the file defines), or else the file itself (it evaluates to
// derivations).

// Found is the target the server evaluates for a buffer, and how it was
// found.
type Found struct {
	Target Target
	// How says which target was chosen and how, on the summary lens:
	// "nixpkgs attribute hello (by-name)". "" for the buffer's own file.
	How string
	// Choices are the targets that match the buffer when several do (the
	// chosen one among them), for the editor to offer.
	Choices []Choice
	Chosen  string
	// buffer is the target that evaluates an unsaved buffer's text in
	// place of the file; nil when the layout evaluates files from disk
	// only (unsaved says why).
	buffer  func(text []byte) nixstore.Target
	unsaved string
	// err is why the layout's targets could not be found (a flake that
	// does not evaluate): the evaluation's error.
	err error
}

// Choice is one target that matches a buffer.
type Choice struct {
	// Name picks it (nixlayer.chooseTarget): an attribute path.
	Name string `json:"name"`
	How  string `json:"how"`
}

// nixTarget is what nixstore instantiates for the buffer at path: its
// text when it differs from the file on disk and the layout can evaluate
// it, else the found target. It returns the text of the file that
// evaluation sees, and why unsaved edits are not in it ("" when they are,
// or there are none).
func (f Found) nixTarget(path string, text []byte) (nixstore.Target, []byte, string) {
	disk, err := os.ReadFile(path)
	if err == nil && string(disk) == string(text) {
		return f.Target.Nix(), text, ""
	}
	if f.buffer != nil {
		return f.buffer(text), text, ""
	}
	return f.Target.Nix(), disk, f.unsaved
}

// choose picks among the targets that match a buffer: the one the user
// chose, else the first. The editor is offered them when there are several.
func choose(choices []Choice, chosen string) (pick int, offered []Choice) {
	for i, c := range choices {
		if c.Name == chosen {
			pick = i
		}
	}
	if len(choices) > 1 {
		offered = choices
	}
	return pick, offered
}

// fileItself is the buffer's own file as the target (nix-instantiate FILE,
// the settings' attr and args applied).
func fileItself(t Target, path string) Found {
	return Found{Target: t, buffer: func(text []byte) nixstore.Target {
		nt := t.Nix()
		nt.Source = text
		return nt
	}}
}

// Workspace is what the editor told of the workspace a buffer is in.
type Workspace struct {
	// Folders are the workspace folders: the only places files are
	// evaluated.
	Folders  []string
	Settings Settings
	// Chosen maps a file to the target picked among several
	// (nixlayer.chooseTarget).
	Chosen map[string]string
}

// Contains reports whether path lies inside a workspace folder the client
// gave; only such files are evaluated (evaluating Nix runs its code and may
// build import-from-derivation inputs).
func (w Workspace) Contains(path string) bool {
	for _, f := range w.Folders {
		rel, err := filepath.Rel(f, path)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

// Finder finds and evaluates the targets of buffers, keeping what is slow
// to read again (nixpkgs' package set, a flake's packages) until it
// changes. Its zero value is not usable: NewFinder.
type Finder struct {
	log    *zap.Logger
	calls  callPackagesCache
	flakes flakeCache
}

// NewFinder is a Finder that logs to log.
func NewFinder(log *zap.Logger) *Finder { return &Finder{log: log} }

// Find decides what to evaluate for the buffer at path: the target of the
// settings wins, then a nixpkgs checkout, a flake, the file itself.
func (fr *Finder) Find(ctx context.Context, ws Workspace, path string) Found {
	folder := filepath.Dir(path)
	for _, f := range ws.Folders {
		if rel, err := filepath.Rel(f, path); err == nil && !strings.HasPrefix(rel, "..") {
			folder = f
			break
		}
	}
	st := ws.Settings
	chosen := ws.Chosen[path]
	t := st.targetFor(path, folder)
	if st.Target != nil && !st.Target.empty() {
		// The settings' target wins; with no file, expression or flake
		// its attr and arguments apply to the buffer's own file.
		f := Found{Target: t}
		if t.File == path {
			f = fileItself(t, path)
		}
		f.How = "target from settings"
		return f
	}
	if root := nixpkgsRoot(path, folder); root != "" {
		if f, ok := fr.nixpkgsTarget(root, path, chosen); ok {
			return f
		}
	}
	if dir := flakeDir(path, folder); dir != "" {
		if f, ok := fr.flakeTarget(ctx, dir, path, chosen); ok {
			return f
		}
	}
	return fileItself(t, path)
}

// allPackagesFile is the file that recognises a nixpkgs checkout.
const allPackagesFile = "pkgs/top-level/all-packages.nix"

// nixpkgsRoot is the nixpkgs checkout holding path inside folder: the
// nearest directory above path with pkgs/top-level/all-packages.nix, or "".
func nixpkgsRoot(path, folder string) string {
	return nearestAbove(path, folder, func(dir string) bool {
		fi, err := os.Stat(filepath.Join(dir, allPackagesFile))
		return err == nil && fi.Mode().IsRegular()
	})
}

// nearestAbove is the nearest directory above path, up to folder, that is
// what it looks for, or "".
func nearestAbove(path, folder string, is func(dir string) bool) string {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if rel, err := filepath.Rel(folder, dir); err != nil || strings.HasPrefix(rel, "..") {
			return ""
		}
		if is(dir) {
			return dir
		}
		if dir == folder || dir == filepath.Dir(dir) {
			return ""
		}
	}
}

// nixpkgsTarget finds the attributes of the checkout at root that build
// the file at path: a by-name package by its directory
// (pkgs/by-name/he/hello/package.nix is hello), any file through the
// callPackage calls of all-packages.nix that name it (or its directory).
// Built as `import <root> {}` with -A attr.
func (fr *Finder) nixpkgsTarget(root, path, chosen string) (Found, bool) {
	type candidate struct {
		Choice
		args string // the callPackage's argument set
	}
	var cands []candidate
	rel, _ := filepath.Rel(root, path)
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) == 5 && parts[0] == "pkgs" && parts[1] == "by-name" && parts[4] == "package.nix" && strings.HasPrefix(strings.ToLower(parts[3]), strings.ToLower(parts[2])) {
		cands = append(cands, candidate{Choice{Name: parts[3], How: fmt.Sprintf("nixpkgs attribute %s (by-name)", parts[3])}, "{ }"})
	}
	calls, err := fr.callPackages(filepath.Join(root, allPackagesFile))
	if err != nil {
		fr.log.Warn("finding the attribute of a nixpkgs file", zap.String("file", path), zap.Error(err))
	}
	for _, cp := range calls {
		target := cp.Path
		if !filepath.IsAbs(target) {
			target = filepath.Join(root, filepath.Dir(allPackagesFile), target)
		}
		target = filepath.Clean(target)
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			target = filepath.Join(target, "default.nix")
		}
		if target != path {
			continue
		}
		dup := false
		for i := range cands {
			if cands[i].Name == cp.Attr {
				cands[i].args, dup = cp.Args, true // all-packages.nix overrides a by-name package
			}
		}
		if !dup {
			cands = append(cands, candidate{Choice{Name: cp.Attr, How: fmt.Sprintf("nixpkgs attribute %s (callPackage in all-packages.nix)", cp.Attr)}, cp.Args})
		}
	}
	if len(cands) == 0 {
		return Found{}, false
	}
	var choices []Choice
	for _, c := range cands {
		choices = append(choices, c.Choice)
	}
	i, offered := choose(choices, chosen)
	pick := cands[i]
	f := Found{Target: Target{File: root, Attr: pick.Name}, How: pick.How, Chosen: pick.Name, Choices: offered}
	// An unsaved buffer: called as its attribute calls the file, in the
	// package set of the checkout (the buffer's lines stay where they are).
	f.buffer = func(text []byte) nixstore.Target {
		src := "with import " + syntax.Quote(root) + " { }; callPackage (" + string(text) + "\n) " + pick.args + "\n"
		return nixstore.Target{File: path, Source: []byte(src)}
	}
	return f, true
}

// callPackagesCache keeps the callPackage calls of the all-packages.nix
// files read, until they change: nixpkgs' is large, and it is read on
// every evaluation of a buffer in the checkout.
type callPackagesCache struct {
	mu    sync.Mutex
	files map[string]cachedCalls
}

type cachedCalls struct {
	mtime time.Time
	size  int64
	calls []nixexpr.CallPackage
}

func (fr *Finder) callPackages(file string) ([]nixexpr.CallPackage, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("reading the package set: %w", err)
	}
	c := &fr.calls
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, ok := c.files[file]; ok && got.mtime.Equal(fi.ModTime()) && got.size == fi.Size() {
		return got.calls, nil
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the package set: %w", err)
	}
	calls := nixexpr.FindCallPackages(parser.Parse(src))
	if c.files == nil {
		c.files = map[string]cachedCalls{}
	}
	c.files[file] = cachedCalls{mtime: fi.ModTime(), size: fi.Size(), calls: calls}
	return calls, nil
}

// flakeDir is the flake holding path inside folder: the nearest directory
// above path with a flake.nix, or "".
func flakeDir(path, folder string) string { return nearestAbove(path, folder, nixstore.HasFlake) }

// flakeTarget finds the packages of the flake in dir whose derivation is
// written in the file at path (by the positions Nix keeps, not by names),
// one per derivation (packages.<system>.default is another name of one of
// the others, mostly). Built as `DIR#packages.<system>.NAME`, from the
// files on disk: a flake is copied to the store as it is saved.
func (fr *Finder) flakeTarget(ctx context.Context, dir, path, chosen string) (Found, bool) {
	pkgs, err := fr.flakes.packages(ctx, dir, path)
	if err != nil {
		// Not the file itself: its error would hide the flake's.
		return Found{How: "flake " + dir, err: fmt.Errorf("finding the outputs of the flake that build %s: %w", filepath.Base(path), err)}, true
	}
	var cands []Choice
	byDrv := map[string]int{}
	for _, p := range pkgs {
		if !slices.Contains(p.Files, path) {
			continue
		}
		c := Choice{Name: p.Attr, How: "flake output " + p.Attr}
		if i, seen := byDrv[p.DrvPath]; seen {
			if strings.HasSuffix(cands[i].Name, ".default") {
				cands[i] = c // the package's own name says more than default
			}
			continue
		}
		byDrv[p.DrvPath] = len(cands)
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return Found{}, false
	}
	i, offered := choose(cands, chosen)
	pick := cands[i]
	return Found{Target: Target{Flake: dir + "#" + pick.Name}, How: pick.How, Chosen: pick.Name, Choices: offered,
		unsaved: "a flake is evaluated from the files on disk: save " + filepath.Base(path) + " to build this edit"}, true
}

// flakeCache keeps the packages of the flakes looked at: evaluating every
// package of a flake is slow, and which file defines which package
// changes with flake.nix or flake.lock mostly. A file that defines none is
// looked for again once it changed (a package may have moved in).
type flakeCache struct {
	mu    sync.Mutex
	dirs  map[string]cachedFlake
	group map[string]*sync.Mutex // one evaluation of a flake at a time
}

type cachedFlake struct {
	stamp string
	at    time.Time
	pkgs  []nixstore.FlakePackage
}

// flakeStamp changes when the flake's definition does.
func flakeStamp(dir string) string {
	var b strings.Builder
	for _, name := range []string{"flake.nix", "flake.lock"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", name, fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return b.String()
}

func (c *flakeCache) packages(ctx context.Context, dir, path string) ([]nixstore.FlakePackage, error) {
	c.mu.Lock()
	if c.group == nil {
		c.group, c.dirs = map[string]*sync.Mutex{}, map[string]cachedFlake{}
	}
	g := c.group[dir]
	if g == nil {
		g = &sync.Mutex{}
		c.group[dir] = g
	}
	c.mu.Unlock()
	g.Lock()
	defer g.Unlock()
	stamp := flakeStamp(dir)
	c.mu.Lock()
	got, ok := c.dirs[dir]
	c.mu.Unlock()
	if ok && got.stamp == stamp && (definesAny(got.pkgs, path) || !changedSince(path, got.at)) {
		return got.pkgs, nil
	}
	at := time.Now()
	pkgs, err := nixstore.FlakePackageFiles(ctx, dir)
	if err != nil {
		if ok {
			// A flake broken by an edit: the last packages are likely
			// still right, and evaluating the chosen one shows the error.
			return got.pkgs, nil
		}
		return nil, err
	}
	c.mu.Lock()
	c.dirs[dir] = cachedFlake{stamp: stamp, at: at, pkgs: pkgs}
	c.mu.Unlock()
	return pkgs, nil
}

// definesAny tells whether path defines one of the packages.
func definesAny(pkgs []nixstore.FlakePackage, path string) bool {
	for _, p := range pkgs {
		if slices.Contains(p.Files, path) {
			return true
		}
	}
	return false
}

// changedSince tells whether the file at path was written at or after t.
func changedSince(path string, t time.Time) bool {
	fi, err := os.Stat(path)
	return err != nil || !fi.ModTime().Before(t)
}

package nixstore

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// FlakePackage is one package a flake outputs for this system, with the
// files its derivation call is written in.
type FlakePackage struct {
	// Attr is its attribute path in the flake's outputs
	// (packages.x86_64-linux.hello).
	Attr    string
	DrvPath string
	// Files are the files of the flake's directory that define the
	// derivation: the file of its meta.position (nixpkgs' stdenv sets it)
	// and those its derivation's attributes are written in (Nix keeps an
	// attribute's position through //, removeAttrs and derivation).
	Files []string
}

// describeFlakePackages is applied to the flake's packages output: for
// this system's packages, the derivation, meta.position and the files the
// derivation's attributes are written in. Evaluation errors of one package
// (a throw, an assertion) leave its drvPath null.
const describeFlakePackages = `packages:
let
  try = x: let r = builtins.tryEval x; in if r.success then r.value else null;
  posFile = attrs: a: let pos = builtins.unsafeGetAttrPos a attrs; in if pos == null then null else pos.file;
  describe = p:
    let attrs = p.drvAttrs or { };
    in {
      drvPath = try (p.drvPath or null);
      position = try (p.meta.position or null);
      files = builtins.filter (f: f != null) (map (posFile attrs) (builtins.attrNames attrs));
    };
in {
  system = builtins.currentSystem;
  packages = builtins.mapAttrs (_: describe) (packages.${builtins.currentSystem} or { });
}`

// HasURLScheme reports whether a flake reference starts with a URL scheme
// (path:, github:, git+https:, …) rather than a path.
func HasURLScheme(ref string) bool { return flakeScheme.MatchString(ref) }

// metaPosition is nixpkgs' meta.position: FILE:LINE.
var metaPosition = regexp.MustCompile(`^(.*):[0-9]+$`)

// FlakePackageFiles evaluates the packages.<system> outputs of the flake in dir
// (as `nix build DIR#…` would find it) and says which files of dir define
// each one's derivation. Packages that fail to evaluate are left out.
func FlakePackageFiles(ctx context.Context, dir string) ([]FlakePackage, error) {
	// Neither call writes the lock file: the editor only looks (nix build
	// writes it, as always).
	meta, err := run(ctx, nil, "nix", append(slices.Clone(flakeFeatures), "flake", "metadata", "--json", "--no-write-lock-file", dir)...)
	if err != nil {
		return nil, fmt.Errorf("reading the flake %s: %w%s", dir, err, flakeHint(ctx))
	}
	var source struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(meta, &source); err != nil || source.Path == "" {
		return nil, fmt.Errorf("reading the flake %s: nix flake metadata gave no store path (%v)", dir, err)
	}
	args := append(slices.Clone(flakeFeatures), "eval", "--json", "--impure", "--no-write-lock-file", dir+"#packages", "--apply", describeFlakePackages)
	out, err := run(ctx, nil, "nix", args...)
	if err != nil {
		return nil, fmt.Errorf("evaluating the packages of the flake %s: %w", dir, err)
	}
	var got struct {
		System   string `json:"system"`
		Packages map[string]struct {
			DrvPath  *string `json:"drvPath"`
			Position *string `json:"position"`
			Files    []string
		} `json:"packages"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("reading the packages of the flake %s: %w", dir, err)
	}
	// Positions are in the flake's copy in the store: the same files in dir.
	local := func(f string) string {
		if rest, ok := strings.CutPrefix(f, source.Path+"/"); ok {
			return filepath.Join(dir, rest)
		}
		return ""
	}
	var pkgs []FlakePackage
	for name, p := range got.Packages {
		if p.DrvPath == nil {
			continue
		}
		fp := FlakePackage{Attr: "packages." + got.System + "." + name, DrvPath: *p.DrvPath}
		files := p.Files
		if p.Position != nil {
			if m := metaPosition.FindStringSubmatch(*p.Position); m != nil {
				files = append(files, m[1])
			}
		}
		for _, f := range files {
			if l := local(f); l != "" && !slices.Contains(fp.Files, l) {
				fp.Files = append(fp.Files, l)
			}
		}
		sort.Strings(fp.Files)
		pkgs = append(pkgs, fp)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Attr < pkgs[j].Attr })
	return pkgs, nil
}

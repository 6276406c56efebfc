package nixbuild

import (
	"crypto/sha256"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/sandbox"
)

// BuilderEnv is the environment Nix gives the builder of d. With
// structured attributes the attributes are not in the environment at all,
// and Nix 2.8 points NIX_ATTRS_*_FILE at its host-side build directory (a
// Nix bug that builders work around; reproduced so they take the same
// path). passAsFile attributes become <name>Path variables.
func BuilderEnv(d *drv.Derivation, cores int) map[string]string {
	if !d.StructuredAttrs() {
		env := sandbox.Env(d.Env, cores)
		for _, a := range passAsFile(d) {
			if _, ok := d.Env[a]; ok {
				delete(env, a)
				env[a+"Path"] = sandbox.BuildDir + "/" + passAsFileName(a)
			}
		}
		return env
	}
	env := sandbox.Env(nil, cores)
	_, drvName, _ := nixstore.SplitStorePath(d.Path)
	hostTop := "/tmp/nix-build-" + drvName + "-0"
	env["NIX_ATTRS_JSON_FILE"] = hostTop + "/.attrs.json"
	env["NIX_ATTRS_SH_FILE"] = hostTop + "/.attrs.sh"
	return env
}

// PassedFile is an attribute Nix hands the builder as a file in its build
// directory.
type PassedFile struct {
	Attr, Name string // the attribute, the file's name
	Data       []byte
}

// PassAsFiles are the files of d's passAsFile attributes.
func PassAsFiles(d *drv.Derivation) []PassedFile {
	var files []PassedFile
	for _, a := range passAsFile(d) {
		if v, ok := d.Env[a]; ok {
			files = append(files, PassedFile{Attr: a, Name: passAsFileName(a), Data: []byte(v)})
		}
	}
	return files
}

// passAsFile lists the attributes Nix hands to the builder as files.
func passAsFile(d *drv.Derivation) []string {
	if d.StructuredAttrs() {
		return nil
	}
	return strings.Fields(d.Env["passAsFile"])
}

// passAsFileName is the file Nix writes an attribute to: .attr- and the
// nix-base32 SHA-256 of the attribute's name.
func passAsFileName(attr string) string {
	h := sha256.Sum256([]byte(attr))
	return ".attr-" + nixbase32.EncodeToString(h[:])
}

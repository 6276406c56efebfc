package background

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/results"
)

// The attributes an audit names are those that differ between the
// derivation that built the stale layer and the audited one, output paths
// aside; the same derivation names none.
func TestChangedAttributes(t *testing.T) {
	old := filepath.Join(t.TempDir(), "old-hello.drv")
	oldOut := "/nix/store/00000000000000000000000000000000-hello"
	aterm := `Derive([("out","` + oldOut + `","","")],[],[],"x86_64-linux","/bin/sh",[],` +
		`[("GREETING","hi"),("gone","x"),("name","hello"),("out","` + oldOut + `"),("prefix","` + oldOut + `/usr")])`
	if err := os.WriteFile(old, []byte(aterm), 0o644); err != nil {
		t.Fatal(err)
	}
	newOut := "/nix/store/11111111111111111111111111111111-hello"
	cur := &drv.Derivation{Path: "/nix/store/new-hello.drv", Outputs: map[string]string{"out": newOut},
		Env: map[string]string{"GREETING": "hello there", "name": "hello", "out": newOut, "prefix": newOut + "/usr", "added": "y"}}
	if _, err := drv.Read(old); err != nil {
		t.Fatal(err)
	}
	if got, want := changedAttributes(old, cur), []string{"GREETING", "added", "gone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("changed attributes %v, want %v", got, want)
	}
	if got := changedAttributes(cur.Path, cur); got != nil {
		t.Errorf("the same derivation: %v", got)
	}
	if got := changedAttributes("/nix/store/missing.drv", cur); len(got) != 1 || !strings.Contains(got[0], "gone") {
		t.Errorf("a derivation that is gone: %v", got)
	}
}

// A failed audit's line names the files, the phases, the changed
// attributes and where the dropped layers start.
func TestAuditFinding(t *testing.T) {
	a := &results.Audit{Files: []results.Difference{{Output: "out", Path: "bin/hello"}}, Phases: []string{"buildPhase", "installPhase"}, Attrs: []string{"GREETING"}}
	got := auditFinding(a, 1, "buildPhase", false)
	for _, want := range []string{"AUDIT FOUND A STALE LAYER", "1 file(s) (out/bin/hello)", "phases that differ: buildPhase installPhase", "attributes changed since buildPhase's layer was built: GREETING", "from buildPhase on are dropped"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := auditFinding(a, 1, "buildPhase", true); !strings.Contains(got, "built by this same derivation") {
		t.Errorf("same derivation: %q", got)
	}
}

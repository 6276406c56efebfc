package nixlayer_test

import (
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/nixlayer/nixlayer/"

// TestArchitectureDiagram checks that ARCHITECTURE.md's import diagram
// (lines "A, B ──> C, D": each of A and B imports each of C and D) holds
// exactly the imports between the module's packages, tests aside.
func TestArchitectureDiagram(t *testing.T) {
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	drawn := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "    ") || !strings.Contains(line, "──>") || strings.Contains(line, "──stdio──>") {
			continue
		}
		segs := strings.Split(line, "──>")
		for i := 0; i+1 < len(segs); i++ {
			for _, from := range names(segs[i]) {
				for _, to := range names(segs[i+1]) {
					drawn[from+" ──> "+to] = true
				}
			}
		}
	}
	if len(drawn) == 0 {
		t.Fatal("no import diagram found in ARCHITECTURE.md")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	real := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				real[strings.TrimPrefix(f[0], module)+" ──> "+strings.TrimPrefix(imp, module)] = true
			}
		}
	}
	for _, a := range slices.Sorted(maps.Keys(real)) {
		if !drawn[a] {
			t.Errorf("ARCHITECTURE.md misses the import %s", a)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(drawn)) {
		if !real[a] {
			t.Errorf("ARCHITECTURE.md draws %s, which is not an import", a)
		}
	}
}

var pkgName = regexp.MustCompile(`^[a-z][a-z0-9/]*$`)

func names(seg string) []string {
	var res []string
	for _, n := range strings.Split(seg, ",") {
		if n = strings.TrimSpace(n); pkgName.MatchString(n) {
			res = append(res, n)
		}
	}
	return res
}

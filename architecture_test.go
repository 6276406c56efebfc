package nixlayer_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
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
	real := map[string]bool{}
	for from, imps := range moduleImports(t) {
		for _, to := range imps {
			real[from+" ──> "+to] = true
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

// TestArchitectureTable checks ARCHITECTURE.md's package table: every
// package of the module has its row with its one job, no row names a
// package that is gone, and the rows go from the top down: a package
// imports only packages below it.
func TestArchitectureTable(t *testing.T) {
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([^`]+)` *\\|(.*)\\|$")
	rank := map[string]int{}
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil || !pkgName.MatchString(m[1]) {
			continue
		}
		if strings.TrimSpace(m[2]) == "" {
			t.Errorf("ARCHITECTURE.md: %s has no job in the package table", m[1])
		}
		if _, twice := rank[m[1]]; twice {
			t.Errorf("ARCHITECTURE.md: %s has two rows in the package table", m[1])
		}
		rank[m[1]] = len(rank)
	}
	imports := moduleImports(t)
	for _, from := range slices.Sorted(maps.Keys(imports)) {
		rf, ok := rank[from]
		if !ok {
			t.Errorf("ARCHITECTURE.md's package table has no row for %s", from)
			continue
		}
		for _, to := range imports[from] {
			if rank[to] <= rf {
				t.Errorf("%s imports %s, which is not below it in ARCHITECTURE.md's package table", from, to)
			}
		}
	}
	for name := range rank {
		if _, ok := imports[name]; !ok {
			t.Errorf("ARCHITECTURE.md's package table has a row for %s, which is not a package", name)
		}
	}
}

// moduleImports are the module's packages (the root, which holds only
// these tests, aside) with the module's packages each imports, tests
// aside, by path inside the module.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		from, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue // the root package
		}
		imports[from] = []string{}
		for _, imp := range f[1:] {
			if to, ok := strings.CutPrefix(imp, module); ok {
				imports[from] = append(imports[from], to)
			}
		}
	}
	return imports
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

// Bounds that keep every package one concept a reader can hold: its
// non-test code within maxPackageLines, and each type's methods within
// maxMethodFiles files.
const (
	maxPackageLines = 1500
	maxMethodFiles  = 4
)

// TestPackageBounds checks those bounds with go list and go/parser.
func TestPackageBounds(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{.Dir}}{{range .GoFiles}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, dir, files := f[0], f[1], f[2:]
		lines := 0
		methodFiles := map[string]map[string]bool{} // type → files
		fset := token.NewFileSet()
		for _, name := range files {
			src, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			lines += strings.Count(string(src), "\n")
			file, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv == nil || len(fd.Recv.List) == 0 {
					continue
				}
				typ := receiverType(fd.Recv.List[0].Type)
				if methodFiles[typ] == nil {
					methodFiles[typ] = map[string]bool{}
				}
				methodFiles[typ][name] = true
			}
		}
		if lines > maxPackageLines {
			t.Errorf("%s has %d lines of non-test code, more than %d: split it by concept", pkg, lines, maxPackageLines)
		}
		for _, typ := range slices.Sorted(maps.Keys(methodFiles)) {
			if n := len(methodFiles[typ]); n > maxMethodFiles {
				t.Errorf("%s.%s has methods in %d files, more than %d: %s", pkg, typ, n, maxMethodFiles, strings.Join(slices.Sorted(maps.Keys(methodFiles[typ])), ", "))
			}
		}
	}
}

// receiverType is the name of a method's receiver type (T of T, *T, T[X]).
func receiverType(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return receiverType(x.X)
	case *ast.IndexExpr:
		return receiverType(x.X)
	case *ast.IndexListExpr:
		return receiverType(x.X)
	case *ast.Ident:
		return x.Name
	}
	return "?"
}

package nixstore

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

func instantiateExpr(t *testing.T, expr string) string {
	t.Helper()
	drvs, err := Instantiate(context.Background(), Target{Expr: expr})
	if err != nil {
		t.Fatal(err)
	}
	if len(drvs) != 1 {
		t.Fatalf("Instantiate = %q, want one drv", drvs)
	}
	return drvs[0]
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

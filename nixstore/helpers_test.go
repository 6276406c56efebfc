package nixstore

import (
	"context"
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

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

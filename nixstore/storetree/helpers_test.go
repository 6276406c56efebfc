package storetree

import (
	"context"
	"testing"

	"github.com/nixlayer/nixlayer/nixstore"
)

func instantiateExpr(t *testing.T, expr string) string {
	t.Helper()
	drvs, err := nixstore.Instantiate(context.Background(), nixstore.Target{Expr: expr})
	if err != nil {
		t.Fatal(err)
	}
	if len(drvs) != 1 {
		t.Fatalf("Instantiate = %q, want one drv", drvs)
	}
	return drvs[0]
}

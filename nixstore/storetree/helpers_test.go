package storetree

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/nixstore"
)

const bashBuilder = `builtins.path { path = /bin/bash-static; name = "bash"; }`

func needNix(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nix-store", "nix-instantiate", "nix-hash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install nix-bin)", tool)
		}
	}
	if _, err := os.Stat("/bin/bash-static"); err != nil {
		t.Skip("/bin/bash-static missing (apt-get install bash-static)")
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to write to the Nix store")
	}
}

// salt makes derivation names unique per test run, so tests never find
// paths left valid by earlier runs.
func salt() string { return fmt.Sprintf("%x", time.Now().UnixNano()) }

func nixOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

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

// offline keeps Nix from trying to reach binary caches (there is no
// network on the test machines).
func offline(t *testing.T) {
	t.Setenv("NIX_CONFIG", "substituters =")
}

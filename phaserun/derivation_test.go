package phaserun

import (
	"context"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixstore"
)

// Whatever a caller names, only a store path ending in .drv is looked at;
// every other path gets the same answer, without being opened (so it
// cannot tell a root-only file from a missing one, or block on a device).
func TestReadDerivationRefusesOutsideTheStore(t *testing.T) {
	e := &Runner{Derivations: drv.NewChecker()}
	store := nixstore.StoreDir()
	for _, p := range []string{
		"/dev/urandom", "/root/.bashrc", "/etc/shadow", "/nonexistent/x.drv", "relative.drv",
		"../../etc/shadow.drv", store + "/../etc/x.drv", store + "/00000000000000000000000000000000-x",
		store + "/00000000000000000000000000000000-x.drv/inner.drv", store + "//00000000000000000000000000000000-x.drv",
		store, "", "x.drv\x00",
	} {
		_, err := e.ReadDerivation(context.Background(), p)
		if err == nil || !strings.Contains(err.Error(), "is not a derivation in the Nix store") {
			t.Errorf("readDerivation(%q) = %v, want the one refusal", p, err)
		}
	}
}

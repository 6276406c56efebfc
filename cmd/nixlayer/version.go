package main

import (
	"cmp"
	"context"
	"fmt"
	"runtime/debug"

	"github.com/nixlayer/nixlayer/cmd/nixlayer/internal/cmdline"
	"github.com/nixlayer/nixlayer/nixstore"
)

// version and commit are set by make build (-ldflags "-X main.version=…
// -X main.commit=…"); otherwise they come from the build information Go
// stamped (go install, builds with -buildvcs).
var version, commit = "", ""

// buildVersion is this binary's version and the commit it was built from
// (with "+dirty" for uncommitted changes), as the Go toolchain stamped them.
func buildVersion() (ver, rev string) {
	ver, rev = version, commit
	if info, ok := debug.ReadBuildInfo(); ok {
		ver = cmp.Or(ver, info.Main.Version)
		var vcsRev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev == "" && vcsRev != "" {
			rev = vcsRev + dirty
		}
	}
	return cmp.Or(ver, "(devel)"), cmp.Or(rev, "unknown (built without -ldflags or VCS stamping)")
}

// cmdVersion prints nixlayer's version and commit, and the Nix it finds
// (on PATH: the one it runs).
func cmdVersion(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return cmdline.Usagef("nixlayer version")
	}
	ver, rev := buildVersion()
	fmt.Printf("nixlayer %s\ncommit %s\n", ver, rev)
	if v, err := nixstore.InstalledNix(ctx); err != nil {
		fmt.Printf("Nix: not found (%v)\n", err)
	} else {
		fmt.Printf("Nix: %s\n", v)
	}
	return nil
}

package hook

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixbuild"
)

// Verdict is the hook's answer to one try request.
type Verdict string

const (
	Accept   Verdict = "accept"
	Decline  Verdict = "decline"
	Postpone Verdict = "postpone"
)

// Decision is a verdict with the reason shown to the user.
type Decision struct {
	Verdict Verdict
	Why     string
}

// supportedFeatures are the system features a layered build provides: it
// runs on this machine like any local build. Features that need devices or
// special sandboxes (kvm, nixos-test, recursive-nix, …) are left to Nix.
var supportedFeatures = map[string]bool{"big-parallel": true, "benchmark": true}

// DeclineAllEnv, set to 1 in the environment of a Nix command, makes the
// hook decline everything: `nixlayer verify` needs Nix's own build.
const DeclineAllEnv = "NIXLAYER_HOOK_DECLINE"

// Decide is the cheap part of the decision: it reads the .drv (inputs are
// already built when Nix sends try, but nothing is realised or built here)
// and tells whether the runner can layer it on this machine. Slots and the
// cache are checked by the caller.
func Decide(req *Request, settings map[string]string) Decision {
	if os.Getenv(DeclineAllEnv) == "1" {
		return Decision{Decline, "asked to let Nix build (" + DeclineAllEnv + "=1, e.g. nixlayer verify)"}
	}
	if !strings.HasSuffix(req.DrvPath, ".drv") {
		return Decision{Decline, "not a .drv path"}
	}
	if sys := localSystem(settings); req.System != sys {
		return Decision{Decline, fmt.Sprintf("system %s is not this machine's %s", req.System, sys)}
	}
	offered := map[string]bool{}
	for _, f := range strings.Fields(settings["system-features"] + " " + settings["extra-system-features"]) {
		offered[f] = true
	}
	for _, f := range req.Features {
		if !supportedFeatures[f] || !offered[f] {
			return Decision{Decline, "requires system feature " + f}
		}
	}
	d, err := drv.Read(req.DrvPath)
	if err != nil {
		return Decision{Decline, "unreadable derivation: " + err.Error()}
	}
	return decideDrv(d)
}

func decideDrv(d *drv.Derivation) Decision {
	if d.IsFixedOutput() {
		return Decision{Decline, "fixed-output derivation: Nix fetches it and checks its hash"}
	}
	if what := nixbuild.Unsupported(d); what != "" {
		return Decision{Decline, "uses " + what + ", which nixlayer does not reproduce"}
	}
	if ok, why, _ := nixbuild.Splittable(d); !ok {
		return Decision{Decline, "not layered: " + why}
	}
	return Decision{Verdict: Accept}
}

// localSystem is Nix's `system` setting, or the platform nixlayer runs on.
func localSystem(settings map[string]string) string {
	if s := settings["system"]; s != "" {
		return s
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// maxJobs is Nix's max-jobs setting ("auto" = number of CPUs).
func maxJobs(settings map[string]string) int {
	v := strings.TrimSpace(settings["max-jobs"])
	if v == "auto" {
		return runtime.NumCPU()
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 1 // Nix's default
	}
	return n
}

// seconds reads a duration setting in seconds (0 = none).
func seconds(settings map[string]string, names ...string) int {
	for _, name := range names {
		if n, err := strconv.Atoi(strings.TrimSpace(settings[name])); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// cores is Nix's cores setting (0 = all CPUs, which the runner also uses
// for 0).
func cores(settings map[string]string) int {
	n, err := strconv.Atoi(strings.TrimSpace(settings["cores"]))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

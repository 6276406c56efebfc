// Package fault lets the fault-injection tests kill nixlayer at a chosen
// step, as a crash or `kill -9` would, to prove every step leaves the
// cache and the Nix store consistent. It does nothing unless
// NIXLAYER_FAULT names the point.
package fault

import (
	"os"
	"syscall"
)

// Point kills the process with SIGKILL when NIXLAYER_FAULT equals name.
func Point(name string) {
	if os.Getenv("NIXLAYER_FAULT") == name {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered asynchronously
	}
}

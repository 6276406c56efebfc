// Package fault lets the fault-injection tests kill nixlayer at a chosen
// step, as a crash or `kill -9` would, to prove every step leaves the
// cache and the Nix store consistent. It does nothing unless
// NIXLAYER_FAULT names the point.
package fault

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// The kill points, in the order a build reaches them. Each is placed where
// a crash would leave the most half-done state behind.
const (
	InPhase        = "in-phase"        // runner: a phase's process is running (its layer is marked running)
	AfterPhase     = "after-phase"     // runner: the phase succeeded, its layer is not committed yet
	BeforeName     = "before-name"     // layers: the layer's metadata is written, its key name is not
	BeforeRegister = "before-register" // nixstore: outputs are copied into the store, not registered
	AfterRegister  = "after-register"  // runner: outputs are registered, ./result is not made yet
	InLearn        = "in-learn"        // runner: the path-map learner ran a scratch phase, its map is not stored
	InRewrite      = "in-rewrite"      // runner: a rewrite layer for new output paths is written, not committed
	InApply        = "in-apply"        // layers: a pulled layer's tar is applied, its metadata and key name are not
)

// Points lists every kill point of a local build; the fault-injection test
// walks them all.
var Points = []string{InPhase, AfterPhase, BeforeName, BeforeRegister, AfterRegister, InLearn, InRewrite}

// PullPoints are the kill points of a pull from a layer cache, walked by
// the registry fault script (cmd/nixlayer/testdata/script/layer_cache_killed_mid_apply.txtar).
var PullPoints = []string{InApply}

// Point kills the process with SIGKILL when NIXLAYER_FAULT equals name.
func Point(name string) {
	if os.Getenv("NIXLAYER_FAULT") == name {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered asynchronously
	}
}

// Hold points stop a process at a step, for as long as a test needs, so
// that it can order events without sleeping.
const (
	InLearnPhase = "in-learn-phase" // runner: a learner's scratch phase is running
)

// holdLimit bounds a hold a test forgot to release.
const holdLimit = 10 * time.Minute

// Hold blocks at point name while NIXLAYER_HOLD equals name: it creates
// the file NIXLAYER_HOLD_REACHED (which the test waits on) and returns when
// release is closed (the held work is cancelled) or after holdLimit.
func Hold(name string, release <-chan struct{}) {
	if os.Getenv("NIXLAYER_HOLD") != name {
		return
	}
	if f := os.Getenv("NIXLAYER_HOLD_REACHED"); f != "" {
		_ = os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	select {
	case <-release:
	case <-time.After(holdLimit):
	}
}

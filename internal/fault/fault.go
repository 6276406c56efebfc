// Package fault lets the fault-injection tests kill nixlayer at a chosen
// step, as a crash or `kill -9` would, to prove every step leaves the
// cache and the Nix store consistent, and lets the tests of concurrent
// work hold a process at a step until they let it go, to force the order
// in which processes meet. It does nothing unless NIXLAYER_FAULT or
// NIXLAYER_PAUSE names the point.
package fault

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The kill points, in the order a build reaches them. Each is placed where
// a crash would leave the most half-done state behind.
const (
	InPhase        = "in-phase"        // runner: a phase's process is running (its layer is marked running)
	AfterPhase     = "after-phase"     // runner: the phase succeeded, its layer is not committed yet
	BeforeName     = "before-name"     // layers: the layer's metadata is written, its key name is not
	BeforeRegister = "before-register" // nixstore/storetree: outputs are copied into the store, not registered
	AfterRegister  = "after-register"  // runner: outputs are registered, ./result is not made yet
	InLearn        = "in-learn"        // runner: the path-map learner ran a scratch phase, its map is not stored
	InRewrite      = "in-rewrite"      // runner: a rewrite layer for new output paths is written, not committed
	InApply        = "in-apply"        // layers: a pulled layer's tar is applied, its metadata and key name are not
)

// Points where the tests of concurrent work pause a process (any kill
// point above is one too).
const (
	WaitLock  = "wait-lock"  // runner: another process holds the lock (detail: its kind, e.g. drv, gc); about to wait for it
	GCDecided = "gc-decided" // runner: gc chose the layers it removes, none is removed yet
	Planned   = "planned"    // runner: a build chose (and pinned) the chain it reuses, nothing is rewritten or run yet
)

// Points lists every kill point of a local build; the fault-injection test
// walks them all.
var Points = []string{InPhase, AfterPhase, BeforeName, BeforeRegister, AfterRegister, InLearn, InRewrite}

// PullPoints are the kill points of a pull from a layer cache, walked by
// the registry fault script (cmd/nixlayer/testdata/script/layer_cache_killed_mid_apply.txtar).
var PullPoints = []string{InApply}

// Point kills the process with SIGKILL when NIXLAYER_FAULT equals name,
// and holds it there when NIXLAYER_PAUSE lists name (see PointAt).
func Point(name string) { PointAt(name, "") }

// PointAt is Point at a step that happens more than once (detail: the
// phase, the lock): NIXLAYER_FAULT names the point alone, NIXLAYER_PAUSE
// (a comma-separated list) either the point or "point:detail".
//
// A paused process creates <entry>.reached in NIXLAYER_PAUSE_DIR and waits
// until <entry>.go exists there (the test's "let go"; a go file made
// beforehand only signals that the point was reached). Every process the
// test starts with the same variables pauses at the entry once it is
// reached, so a test gives each process its own directory.
func PointAt(name, detail string) {
	if os.Getenv("NIXLAYER_FAULT") == name {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered asynchronously
	}
	pause := os.Getenv("NIXLAYER_PAUSE")
	if pause == "" {
		return
	}
	entries := strings.Split(pause, ",")
	for _, entry := range []string{name, name + ":" + detail} {
		if slices.Contains(entries, entry) {
			hold(entry)
		}
	}
}

// hold says the process reached entry and waits to be let go.
func hold(entry string) {
	dir := os.Getenv("NIXLAYER_PAUSE_DIR")
	if dir == "" {
		return
	}
	if f, err := os.Create(filepath.Join(dir, entry+".reached")); err == nil {
		f.Close()
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, entry+".go")); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // a test holds the process: nothing announces the go
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

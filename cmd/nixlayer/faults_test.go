package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/internal/fault"
	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/runner"
)

// TestFaultInjection kills nixlayer with SIGKILL at every step that writes
// (see internal/fault) and checks that the next run builds the right
// output, reuses no half-written layer and leaves the Nix store valid.
func TestFaultInjection(t *testing.T) {
	e := newEnv(t)
	// These points are reached only by a resumed build after an edit.
	afterEdit := map[string]bool{fault.InLearn: true, fault.InRewrite: true}
	survived := 0
	for _, point := range fault.Points {
		ok := t.Run(point, func(t *testing.T) {
			f := fixture{attr: "embed", args: []string{"--argstr", "salt", e2etest.Salt()}}
			var exact []string
			if afterEdit[point] {
				e.mustBuild(f)
				f = f.with("--argstr", "postInstallExtra", "echo edited > $out/edited")
				exact = []string{"--exact"} // learns the map in the foreground
			}
			cmd := exec.Command(nixlayerBin, append(append([]string{"build", "-Q", "--cache", e.cache}, exact...), f.cli()...)...)
			cmd.Dir = e.dir
			cmd.Env = append(os.Environ(), "NIXLAYER_FAULT="+point)
			out, err := cmd.CombinedOutput()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("fault %s was not hit (err %v):\n%s", point, err, out)
			}
			outs, stderr := e.mustBuild(f, exact...)
			if !strings.HasPrefix(outs[0], nixstore.StoreDir()+"/") {
				t.Fatalf("after the fault the result is not in the store:\n%s", stderr)
			}
			e.nixBuild(f, "--check")
			st, err := layers.Open(e.cache)
			if err != nil {
				t.Fatal(err)
			}
			all, _ := st.List()
			st.Close()
			for _, l := range all {
				if l.Meta.Status == layers.StatusRunning {
					t.Fatalf("a half-written layer survived: %s (%s)", l.ID, l.Meta.Note)
				}
			}
			if r := e2etest.Run(e.dir, nil, "nix-store", "--verify-path", outs[0]); r.Err != nil {
				t.Fatalf("store path %s invalid: %s", outs[0], r.Stderr)
			}
		})
		if ok {
			survived++
		}
	}
	t.Logf("fault injection: survived %d of %d kill -9 points", survived, len(fault.Points))
}

// TestFullDisk builds into a cache on a tiny filesystem: the build fails
// with a clear error, nothing reaches the store, and the same cache works
// once there is room.
func TestFullDisk(t *testing.T) {
	e := newEnv(t)
	small := t.TempDir()
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=600k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	defer syscall.Unmount(small, syscall.MNT_DETACH)
	f := hello(e2etest.Salt())
	r := e2etest.Run(e.dir, nil, nixlayerBin, append([]string{"build", "-Q", "--cache", small}, f.cli()...)...)
	if r.Err == nil {
		t.Fatal("a build into a 600 KiB cache succeeded")
	}
	if !strings.Contains(strings.ToLower(r.Stderr), "space") {
		t.Errorf("the error does not say the disk is full:\n%s", r.Stderr)
	}
	drv := e2etest.Lines(e2etest.Run(e.dir, nil, "nix-instantiate", f.cli()[1:]...).Stdout)[0]
	outPath := e2etest.Lines(e2etest.Run(e.dir, nil, "nix-store", "-q", "--outputs", drv).Stdout)[0]
	if ok, _ := nixstore.IsValid(t.Context(), outPath); ok {
		t.Fatalf("%s became valid after a failed build", outPath)
	}
	// Make room: the same cache must now give the right output.
	if err := syscall.Mount("tmpfs", small, "tmpfs", syscall.MS_REMOUNT, "size=512m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	outs, _ := func() ([]string, string) {
		r := e2etest.Run(e.dir, nil, nixlayerBin, append([]string{"build", "-Q", "--cache", small}, f.cli()...)...)
		if r.Err != nil {
			t.Fatalf("build after making room: %v\n%s", r.Err, r.Stderr)
		}
		return e2etest.Lines(r.Stdout), r.Stderr
	}()
	e.sameAsNix(f, outs[0])
}

// TestDamagedLayerIsRebuilt deletes a cached layer's directory behind
// nixlayer's back: the next build notices, drops it and its descendants,
// and rebuilds them.
func TestDamagedLayerIsRebuilt(t *testing.T) {
	e := newEnv(t)
	f := hello(e2etest.Salt())
	built, _ := e.mustBuild(f)
	e.forget(built...)
	p := e.plan(f)
	victim := p.Phases[3].Layer.ID // buildPhase
	if err := os.RemoveAll(e.cache + "/storage/overlay/" + victim); err != nil {
		t.Fatal(err)
	}
	outs, stderr := e.mustBuild(f)
	if eventOf(buildEvents(stderr), runner.EventRepair) == nil {
		t.Fatalf("damage not reported:\n%s", stderr)
	}
	if ran := ranPhases(stderr); len(ran) == 0 || ran[0] != p.Phases[3].Name {
		t.Fatalf("after the damage the build ran %v, want from %s", ran, p.Phases[3].Name)
	}
	e.sameAsNix(f, outs[0])
}

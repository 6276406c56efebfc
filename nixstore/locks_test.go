package nixstore

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/nixtest"
)

func TestLockPathsExcludes(t *testing.T) {
	d := t.TempDir()
	a, b := filepath.Join(d, "a"), filepath.Join(d, "b")
	unlock, err := LockPaths(context.Background(), []string{b, a, a})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := LockPaths(ctx, []string{a}); err == nil || !strings.Contains(err.Error(), a+".lock") {
		t.Fatalf("second lock on %s: %v, want a timeout naming the lock file", a, err)
	}
	done := make(chan error)
	go func() {
		u, err := LockPaths(context.Background(), []string{a, b})
		if err == nil {
			u()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	unlock()
	unlock() // idempotent
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock after unlock")
	}
	if _, err := os.Stat(a + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock file not removed on unlock")
	}
}

// TestLockPathsExcludesNix holds the lock of a derivation's output and
// checks that nix-store --realise waits for it, as it would for another
// Nix process building the same path.
func TestLockPathsExcludesNix(t *testing.T) {
	nixtest.NeedNix(t)
	nixtest.NeedRoot(t)
	nixtest.Offline(t)
	ctx := context.Background()
	drvPath := instantiateExpr(t, `derivation { name = "lock-`+nixtest.Salt()+`"; system = builtins.currentSystem; builder = `+nixtest.BashBuilder+`; args = [ "-c" "echo hi > $out" ]; }`)
	out := nixtest.Out(t, "nix-store", "-q", "--outputs", drvPath)
	unlock, err := LockPaths(ctx, []string{out})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix-store", "--realise", "--no-gc-warning", drvPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("nix-store --realise finished while we held the lock: %v\n%s", err, stderr.String())
	case <-time.After(1500 * time.Millisecond):
	}
	if ok, _ := IsValid(ctx, out); ok {
		t.Fatalf("%s became valid while we held its lock", out)
	}
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("nix-store --realise after unlock: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("nix-store --realise still waiting after unlock")
	}
	if !strings.Contains(stderr.String(), "waiting for lock") {
		t.Logf("nix-store stderr had no 'waiting for lock' line:\n%s", stderr.String())
	}
	if ok, err := IsValid(ctx, out); err != nil || !ok {
		t.Errorf("IsValid(%s) = %v, %v after the build", out, ok, err)
	}
	// And the other way round: while Nix builds, it holds the lock.
	// (Checked indirectly: our lock is free again once Nix is done.)
	u2, err := LockPaths(ctx, []string{out})
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

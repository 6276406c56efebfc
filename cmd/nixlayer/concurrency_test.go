package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/internal/e2etest"
	"github.com/nixlayer/nixlayer/layers"
)

// TestConcurrentBuilds runs builds of the same and of different
// derivations at once on one cache: all succeed with Nix's outputs, the
// second build of a derivation says it waits, and no layer is left
// half-written or named twice.
func TestConcurrentBuilds(t *testing.T) {
	e := newEnv(t)
	salt := e2etest.Salt()
	slow := hello(salt).with("--argstr", "preBuildExtra", "sleep 3")
	builds := []fixture{
		slow, slow, // the same derivation twice
		hello(salt).with("--argstr", "postInstallExtra", "echo other > $out/other"),
		{attr: "multi", args: []string{"--argstr", "salt", salt}},
		{attr: "custom", args: []string{"--argstr", "salt", salt}},
		{attr: "embed", args: []string{"--argstr", "salt", salt}},
	}
	results := make([]e2etest.Result, len(builds))
	var wg sync.WaitGroup
	for i, f := range builds {
		wg.Add(1)
		go func(i int, f fixture) {
			defer wg.Done()
			if i == 1 {
				time.Sleep(1500 * time.Millisecond) // let the first take the lock
			}
			results[i] = e2etest.Run(e.dir, nil, nixlayerBin, append([]string{"build", "-Q", "--no-out-link", "--cache", e.cache}, f.cli()...)...)
		}(i, f)
	}
	wg.Wait()
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("concurrent build %d (%v) failed: %v\n%s", i, builds[i].cli(), r.Err, r.Stderr)
		}
	}
	if !strings.Contains(results[1].Stderr, "waiting for another build") {
		t.Errorf("the second build of the same derivation did not report waiting:\n%s", results[1].Stderr)
	}
	if results[0].Stdout != results[1].Stdout {
		t.Errorf("the same derivation gave %q and %q", results[0].Stdout, results[1].Stdout)
	}
	for i, f := range builds {
		e.sameAsNix(f, e2etest.Lines(results[i].Stdout)[0])
	}
	st, err := layers.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, _ := st.List()
	for _, l := range all {
		if l.Meta.Status == layers.StatusRunning {
			t.Errorf("layer %s left running", l.ID)
		}
	}
	t.Logf("%d concurrent builds held, %d layers in the cache", len(builds), len(all))
}

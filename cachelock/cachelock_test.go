package cachelock

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// An exclusive lock waits for its holder and says so; shared holders
// share; a wait ends with its context; Held names what is held.
func TestLocks(t *testing.T) {
	l := In(t.TempDir())
	drv := "/nix/store/00000000000000000000000000000000-hello-1.drv"
	unlock, err := l.Exclusive(context.Background(), "drv", drv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if held := l.Held("drv"); !slices.Equal(held, []string{drv}) {
		t.Errorf("held %q, want the derivation", held)
	}
	if _, ok := l.Try("drv", drv); ok {
		t.Error("Try took a held lock")
	}
	if u, ok := l.Try("drv", "/nix/store/11111111111111111111111111111111-other.drv"); !ok {
		t.Error("Try could not take another subject's lock")
	} else {
		u()
	}

	waited := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		u, err := l.Exclusive(context.Background(), "drv", drv, func() { close(waited) })
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("a second holder did not say it waits")
	}
	select {
	case err := <-got:
		t.Fatalf("the second holder took the lock while it was held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	unlock() // twice is once
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if held := l.Held("drv"); len(held) != 0 {
		t.Errorf("held %q after every holder let go", held)
	}

	// Shared holders share; an exclusive one waits for them, until its
	// context ends.
	s1, err := l.Shared(context.Background(), "gc", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s1()
	s2, err := l.Shared(context.Background(), "gc", "", func() { t.Error("a shared holder waited for another") })
	if err != nil {
		t.Fatal(err)
	}
	defer s2()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := l.Exclusive(ctx, "gc", "", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an exclusive holder beside shared ones: %v, want its context's end", err)
	}
}

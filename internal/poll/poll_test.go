package poll

import (
	"context"
	"testing"
	"time"
)

func TestEveryStopsWhenTheCheckSays(t *testing.T) {
	n := 0
	Every(context.Background(), time.Millisecond, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("checked %d times, want 3", n)
	}
}

func TestEveryStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Every(ctx, time.Hour, func() bool { t.Fatal("checked after the context ended"); return true })
}

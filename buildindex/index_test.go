package buildindex

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestJoinAndLastNixBuild(t *testing.T) {
	cache := t.TempDir()
	const a = "/nix/store/00000000000000000000000000000000-a-1.drv"
	const b = "/nix/store/11111111111111111111111111111111-b-1.drv"
	for _, step := range []func() error{
		func() error { return RecordStart(cache, a, ByNix) },
		func() error { return RecordEnd(cache, a, ByNix, EventEnd, []string{"/nix/store/x-a-1"}, "") },
		func() error { return RecordStart(cache, b, ByNix) }, // failed under Nix: no end
		func() error { return RecordStart(cache, a, ByNixlayer) },
		func() error { return RecordEnd(cache, a, ByNixlayer, EventFailed, nil, "boom") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// A torn line is skipped.
	f, err := os.OpenFile(Path(cache), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"20`)
	f.Close()

	bs, err := Builds(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 {
		t.Fatalf("builds: %+v", bs)
	}
	if bs[0].Drv != a || bs[0].By != ByNix || bs[0].Status != StatusBuilt || bs[0].Start.IsZero() || bs[0].End.Before(bs[0].Start) ||
		bs[0].Outputs[filepath.Base("/nix/store/x-a-1")] != "/nix/store/x-a-1" || bs[0].Name != "a-1" {
		t.Errorf("nix build of a: %+v", bs[0])
	}
	if bs[1].Drv != b || bs[1].Status != StatusUnfinished || !bs[1].End.IsZero() {
		t.Errorf("unfinished build of b: %+v", bs[1])
	}
	if bs[2].By != ByNixlayer || bs[2].Status != StatusFailed || bs[2].Message != "boom" {
		t.Errorf("hook build of a: %+v", bs[2])
	}
	last, err := LastNixBuild(cache, a)
	if err != nil || last == nil || last.End != bs[0].End {
		t.Errorf("LastNixBuild(a) = %+v, %v", last, err)
	}
	if last, _ := LastNixBuild(cache, b); last != nil {
		t.Errorf("an unfinished build counts as built: %+v", last)
	}
	if last, _ := LastNixBuild(t.TempDir(), a); last != nil {
		t.Errorf("a cache without an index: %+v", last)
	}
}

// An end without its start (post-build-hook set, pre-build-hook not) still
// makes a build, its start from the duration when there is one.
func TestJoinEndWithoutStart(t *testing.T) {
	end := time.Unix(2000, 0)
	bs := Join([]Record{{Time: end, Event: EventEnd, By: ByNix, Drv: "/nix/store/d.drv", Duration: 5 * time.Second}})
	if len(bs) != 1 || bs[0].Status != StatusBuilt || !bs[0].Start.Equal(end.Add(-5*time.Second)) {
		t.Errorf("%+v", bs)
	}
}

func TestDrvName(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello-2.12.1.drv": "hello-2.12.1",
		"/tmp/plain.drv": "plain",
	} {
		if got := DrvName(in); got != want {
			t.Errorf("DrvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHookBuiltMark(t *testing.T) {
	cache := t.TempDir()
	const d = "/nix/store/00000000000000000000000000000000-a-1.drv"
	if TakeHookBuilt(cache, d) {
		t.Fatal("unmarked derivation taken")
	}
	if err := MarkHookBuilt(cache, d); err != nil {
		t.Fatal(err)
	}
	if !TakeHookBuilt(cache, d) || TakeHookBuilt(cache, d) {
		t.Fatal("a mark is taken exactly once")
	}
}

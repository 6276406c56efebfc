package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// The scripts' checks must be able to fail: each case below is a script
// that uses a check against output that contradicts it, and must fail;
// the first one holds the same checks against agreeing output and must
// pass. Runs without Nix (make unit).

const buildEvents = `{"kind":"plan","index":0,"total":9}
{"kind":"cached","phase":"unpackPhase","index":1,"total":9}
{"kind":"start","phase":"installPhase","index":6,"total":9,"follows":"unpackPhase","message":"follows unpackPhase"}
{"kind":"start","phase":"fixupPhase","index":7,"total":9}
{"kind":"verdict","index":0,"total":0,"exact":true,"message":"exact: by rule unreachable"}
{"kind":"provisional","index":0,"total":0,"state":"provisional"}
a line that is not an event
`

var commandChecks = []struct {
	name, script string
	pass         bool
}{
	{"agreeing", `
exec cat build.jsonl
cp stdout events
exec sh -c 'cat events >&2; echo /nix/store/00000000000000000000000000000000-x; echo /tmp/y'
ran installPhase fixupPhase
ran-from installPhase
event start phase=installPhase follows=unpackPhase 'message~=follows'
event verdict exact=true message~=unreachable
! event learn
! event start phase=unpackPhase
state provisional
lines stderr -match kind 6
out OUT
in-store $OUT
! in-store /tmp/y
exec echo '{"a": 1, "b": ["x", "y"]}'
json '.a == 1'
json -set B '.b | join(" ")'
json '(.b | join(" ")) == $B'
! json '.a == 2'
edit f.txt 'one' 'two'
grep '^two$' f.txt
mkdir a b
cp f.txt a/f.txt
cp f.txt b/f.txt
nar-equal a b
cp build.jsonl b/f.txt
! nar-equal a b
`, true},
	{"ran", "exec sh -c 'cat build.jsonl >&2'\nran installPhase\n", false},
	{"ran-none", "exec sh -c 'cat build.jsonl >&2'\nran\n", false},
	{"ran-from", "exec sh -c 'cat build.jsonl >&2'\nran-from unpackPhase\n", false},
	{"event-field", "exec sh -c 'cat build.jsonl >&2'\nevent verdict exact=\n", false},
	{"event-substring", "exec sh -c 'cat build.jsonl >&2'\nevent verdict message~=nondeterministic\n", false},
	{"event-missing", "exec sh -c 'cat build.jsonl >&2'\nevent learn\n", false},
	{"event-absent", "exec sh -c 'cat build.jsonl >&2'\n! event start phase=fixupPhase\n", false},
	{"state", "exec sh -c 'cat build.jsonl >&2'\nstate verified\n", false},
	{"lines", "exec sh -c 'cat build.jsonl >&2'\nlines stderr 1\n", false},
	{"in-store", "exec echo /tmp/y\nout Y\nin-store $Y\n", false},
	{"json", "exec echo '{\"a\": 1}'\njson '.a == 2'\n", false},
	{"json-null", "exec echo '{\"a\": 1}'\njson '.b'\n", false},
	{"edit", "edit f.txt 'three' 'four'\n", false},
	{"nar-equal", "mkdir a b\ncp f.txt a/f\ncp build.jsonl b/f\nnar-equal a b\n", false},
}

func TestScriptChecksCanFail(t *testing.T) {
	for _, c := range commandChecks {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			script := c.script + "-- build.jsonl --\n" + buildEvents + "-- f.txt --\none\n"
			if err := os.WriteFile(filepath.Join(dir, c.name+".txtar"), []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			ft := &fakeT{}
			ft.run(func() {
				testscript.RunT(ft, testscript.Params{Dir: dir, Setup: setupScript, Cmds: scriptCmds, RequireExplicitExec: true})
			})
			if ft.failed == c.pass {
				t.Fatalf("script failed: %v, want %v\n%s", ft.failed, !c.pass, ft.log.String())
			}
		})
	}
}

// fakeT runs testscript and records whether it failed instead of failing
// the test.
type fakeT struct {
	mu     sync.Mutex
	failed bool
	log    strings.Builder
}

func (f *fakeT) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func (f *fakeT) Skip(args ...any) { f.Log(args...); runtime.Goexit() }
func (f *fakeT) Fatal(args ...any) {
	f.Log(args...)
	f.FailNow()
}
func (f *fakeT) Parallel() {}
func (f *fakeT) Log(args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintln(&f.log, args...)
}
func (f *fakeT) FailNow() {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeT) Run(name string, fn func(testscript.T)) { f.run(func() { fn(f) }) }
func (f *fakeT) Verbose() bool                          { return false }

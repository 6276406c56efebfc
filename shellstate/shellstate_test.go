package shellstate

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// dumpsOf runs script in bash with fd 4 captured.
func dumpsOf(t *testing.T, script string) []*Capture {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", "exec 4>&3 3>&-\n"+script)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	data, _ := readAll(r)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	caps, err := ParseDumps(data)
	if err != nil {
		t.Fatal(err)
	}
	return caps
}

func readAll(f *os.File) ([]byte, error) {
	var b strings.Builder
	buf := make([]byte, 65536)
	for {
		n, err := f.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return []byte(b.String()), nil
		}
	}
}

const setup = `export keep=1 gone=2; arr=(a b); f() { echo f; }; g() { echo g; }`

func TestDeltaRoundTrip(t *testing.T) {
	dir := t.TempDir()
	caps := dumpsOf(t, setup+"\n"+DumpCommand+`
new=$'two\nlines "q"'; export keep=changed; unset gone; arr+=(c); declare -A m=([k]=v [x y]=z)
declare -i n=5; declare -n ref=new; sparse=(); sparse[7]=s
f() { echo changed; }; unset -f g; h() { local x=1; echo "$x"; }
shopt -s nullglob; set -o pipefail; umask 0027; cd `+dir+`
`+DumpCommand)
	if len(caps) != 2 {
		t.Fatalf("got %d captures", len(caps))
	}
	d := Diff(caps[0], caps[1])
	for _, want := range []string{"new", "keep", "arr", "m", "n", "ref", "sparse"} {
		if _, ok := d.Vars[want]; !ok {
			t.Errorf("delta misses variable %s: %v", want, d.Vars)
		}
	}
	if len(d.Unset) != 1 || d.Unset[0] != "gone" {
		t.Errorf("unset = %v", d.Unset)
	}
	if len(d.UnsetFuncs) != 1 || d.UnsetFuncs[0] != "g" {
		t.Errorf("unset funcs = %v", d.UnsetFuncs)
	}
	// Replaying the delta on a fresh shell must give the same capture.
	again := dumpsOf(t, setup+"\n"+DumpCommand+"\n"+d.Script()+"\n"+DumpCommand)
	d2 := Diff(again[0], again[1])
	if d2.Script() != d.Script() {
		t.Errorf("replayed state differs:\n%s\n---\n%s", d.Script(), d2.Script())
	}
	if again[1].Options["umask"] != "umask 0027" {
		t.Errorf("umask not carried: %q", again[1].Options["umask"])
	}
	if again[1].Cwd != dir {
		t.Errorf("cwd = %q", again[1].Cwd)
	}
}

func TestTruncatedDump(t *testing.T) {
	if _, err := ParseDumps([]byte("declare -- x=1\x00")); err == nil {
		t.Fatal("truncated dump accepted")
	}
}

func FuzzParseDumps(f *testing.F) {
	f.Add([]byte("declare -x a=\"1\"\x00f () \n{ \n echo\n}\x00/build\x00shopt -s x\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		caps, err := ParseDumps(data)
		if err == nil && len(caps) > 1 {
			_ = Diff(caps[0], caps[1]).Script()
		}
	})
}

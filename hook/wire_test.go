package hook

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixlayer/nixlayer/drv"
	"github.com/nixlayer/nixlayer/nixstore"
)

func encodeConversation(t testing.TB, settings map[string]string, reqs ...*Request) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSettings(&b, settings); err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if err := WriteRequest(&b, r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestWireRoundTrip(t *testing.T) {
	settings := map[string]string{"max-jobs": "4", "system": "x86_64-linux", "builders": "", "odd": "seven b"}
	req := &Request{AmWilling: true, System: "x86_64-linux", DrvPath: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x.drv", Features: []string{"big-parallel", "kvm"}}
	r := bytes.NewReader(encodeConversation(t, settings, req))
	got, err := ReadSettings(r)
	if err != nil || !reflect.DeepEqual(got, settings) {
		t.Fatalf("settings: %v, %v", got, err)
	}
	gotReq, err := ReadRequest(r)
	if err != nil || !reflect.DeepEqual(gotReq, req) {
		t.Fatalf("request: %+v, %v", gotReq, err)
	}
	if _, err := ReadRequest(r); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last request: %v, want EOF", err)
	}
}

// The byte layout Nix uses: 8-byte little-endian integers, strings padded
// to 8 bytes with zeros.
func TestWireLayoutMatchesNix(t *testing.T) {
	var b bytes.Buffer
	WriteRequest(&b, &Request{AmWilling: false, System: "x", DrvPath: "abcdefghi"})
	want := []byte{}
	u := func(n uint64) { want = binary.LittleEndian.AppendUint64(want, n) }
	s := func(str string) {
		u(uint64(len(str)))
		want = append(want, str...)
		for len(want)%8 != 0 {
			want = append(want, 0)
		}
	}
	s("try")
	u(0)
	s("x")
	s("abcdefghi")
	u(0)
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("got %x\nwant %x", b.Bytes(), want)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	huge := binary.LittleEndian.AppendUint64(nil, 1)
	huge = binary.LittleEndian.AppendUint64(huge, 1<<62) // a string of 4 EiB
	cases := map[string][]byte{
		"not a flag":        binary.LittleEndian.AppendUint64(nil, 7),
		"huge string":       huge,
		"truncated":         encodeConversation(t, map[string]string{"a": "b"})[:13],
		"bad padding":       append(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1), 1), 'a', 1, 0, 0, 0, 0, 0, 0),
		"text instead of":   []byte("hello, this is not the Nix wire format at all\n"),
		"settings then EOF": append(encodeConversation(t, map[string]string{}), 3, 0, 0),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			r := bytes.NewReader(data)
			if _, err := ReadSettings(r); err == nil {
				if _, err := ReadRequest(r); err == nil {
					t.Fatal("garbage accepted")
				}
			}
		})
	}
}

// Serve must answer garbage with a decline (or end quietly at a clean EOF)
// and return promptly: Nix waits for a line after every try.
func TestServeGarbage(t *testing.T) {
	valid := encodeConversation(t, map[string]string{"system": "x86_64-linux"})
	truncatedTry := encodeConversation(t, map[string]string{}, &Request{System: "x86_64-linux", DrvPath: "/nix/store/x.drv"})
	cases := map[string]struct {
		in          []byte
		wantDecline bool
	}{
		"empty":            {nil, false},
		"settings only":    {valid, false},
		"random":           {[]byte("\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xffzz"), true},
		"truncated try":    {truncatedTry[:len(truncatedTry)-5], true},
		"bad try":          {append(append([]byte{}, valid...), encodeConversation(t, nil)[:8]...), false},
		"non-store drv":    {encodeConversation(t, map[string]string{"system": "x86_64-linux"}, &Request{AmWilling: true, System: "x86_64-linux", DrvPath: "/etc/passwd"}), true},
		"missing drv file": {encodeConversation(t, map[string]string{"system": "x86_64-linux"}, &Request{AmWilling: true, System: "x86_64-linux", DrvPath: "/nix/store/00000000000000000000000000000000-gone.drv"}), true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- Serve(context.Background(), Config{Stdin: bytes.NewReader(c.in), Reply: &out, CacheDir: t.TempDir(), NixPID: 1})
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve hung on bad input")
			}
			got := strings.Contains(out.String(), "# decline\n")
			if got != c.wantDecline {
				t.Fatalf("decline=%v, want %v; output:\n%s", got, c.wantDecline, out.String())
			}
			if strings.Contains(out.String(), "# accept") {
				t.Fatalf("accepted garbage:\n%s", out.String())
			}
		})
	}
}

func TestDecideDrv(t *testing.T) {
	base := func() *drv.Derivation {
		return &drv.Derivation{
			Outputs: map[string]string{"out": "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x"},
			Env:     map[string]string{"stdenv": "/nix/store/s", "buildCommand": "true"},
			Args:    []string{"-e", "/nonexistent/default-builder.sh"},
			Builder: "/nix/store/b-bash",
		}
	}
	fod := base()
	fod.OutputHashes = map[string]drv.OutputHash{"out": {HashAlgo: "sha256", Hash: "00"}}
	paf := base()
	paf.Env["passAsFile"] = "buildCommand"
	graph := base()
	graph.Env["exportReferencesGraph"] = "graph /nix/store/s"
	cases := map[string]*drv.Derivation{"fixed-output": fod, "runCommand (buildCommand as a file)": paf, "buildCommand": base(), "exportReferencesGraph": graph}
	for name, d := range cases {
		if got := decideDrv(d); got.Verdict != Decline || got.Why == "" {
			t.Errorf("%s: %+v, want a decline with a reason", name, got)
		}
	}
	// What the runner reproduces is layered: passAsFile and output checks.
	// The builder script is read only from the store: a store of the test's.
	store := t.TempDir()
	t.Setenv("NIX_STORE_DIR", store)
	script := filepath.Join(store, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-default-builder.sh")
	if err := os.WriteFile(script, []byte("source $stdenv/setup\ngenericBuild\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checked := base()
	delete(checked.Env, "buildCommand")
	checked.Args = []string{"-e", script}
	for k, v := range map[string]string{"passAsFile": "payload", "payload": "x", "disallowedReferences": "/nix/store/s",
		"allowedReferences": "out", "allowedRequisites": "", "disallowedRequisites": "/nix/store/s"} {
		checked.Env[k] = v
	}
	if got := decideDrv(checked); got.Verdict != Accept {
		t.Errorf("passAsFile and reference checks: %+v, want accept", got)
	}
}

func TestSettingsHelpers(t *testing.T) {
	if n := maxJobs(map[string]string{"max-jobs": "3"}); n != 3 {
		t.Errorf("maxJobs = %d", n)
	}
	if n := maxJobs(map[string]string{"max-jobs": "auto"}); n < 1 {
		t.Errorf("maxJobs(auto) = %d", n)
	}
	if n := seconds(map[string]string{"timeout": "0", "build-timeout": "5"}, "timeout", "build-timeout"); n != 5 {
		t.Errorf("seconds = %d", n)
	}
	if haveBuilders(map[string]string{"builders": "@/nonexistent/machines"}) {
		t.Error("a missing machines file has builders")
	}
	if !haveBuilders(map[string]string{"builders": "ssh://a x86_64-linux; ssh://b"}) {
		t.Error("an inline builder list has none")
	}
	v, err := nixstore.ParseNixVersion("nix (Nix) 2.26.3\n")
	if err != nil || !v.AtLeast(2, 26) || v.AtLeast(2, 27) {
		t.Errorf("parseNixVersion: %+v %v", v, err)
	}
	if len(VersionNotes(v)) == 0 {
		t.Error("no note about the 2.25–2.33 nix.conf caveat for 2.26")
	}
}

// FuzzReadRequest feeds arbitrary bytes to the reader Nix's stdin goes
// through: it must never panic, and whatever it accepts must re-encode to
// an equal conversation.
func FuzzReadRequest(f *testing.F) {
	f.Add(encodeConversation(f, map[string]string{"system": "x86_64-linux"}, &Request{AmWilling: true, System: "x86_64-linux", DrvPath: "/nix/store/a.drv", Features: []string{"kvm"}}))
	f.Add([]byte{})
	f.Add([]byte("try"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		settings, err := ReadSettings(r)
		if err != nil {
			return
		}
		var reqs []*Request
		for {
			req, err := ReadRequest(r)
			if err != nil {
				break
			}
			reqs = append(reqs, req)
		}
		again := bytes.NewReader(encodeConversation(t, settings, reqs...))
		s2, err := ReadSettings(again)
		if err != nil || !reflect.DeepEqual(s2, settings) {
			t.Fatalf("settings do not round-trip: %v %v", s2, err)
		}
		for _, want := range reqs {
			got, err := ReadRequest(again)
			if err != nil {
				t.Fatalf("request does not round-trip: %v", err)
			}
			if got.AmWilling != want.AmWilling || got.System != want.System || got.DrvPath != want.DrvPath || strings.Join(got.Features, "\x00") != strings.Join(want.Features, "\x00") {
				t.Fatalf("request changed: %+v vs %+v", got, want)
			}
		}
	})
}

package nixbuild

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/drv"
)

const outPath = "/nix/store/00000000000000000000000000000000-x"

func derivation(env map[string]string) *drv.Derivation {
	return &drv.Derivation{Path: "/nix/store/11111111111111111111111111111111-x.drv", Name: "x",
		Outputs: map[string]string{"out": outPath, "dev": outPath + "-dev"}, Env: env}
}

func structured(t *testing.T, attrs map[string]any) *drv.Derivation {
	t.Helper()
	js, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return derivation(map[string]string{"__json": string(js)})
}

func TestUnsupported(t *testing.T) {
	for _, c := range []struct {
		name string
		d    *drv.Derivation
		want string
	}{
		{"plain", derivation(map[string]string{"stdenv": "/s"}), ""},
		{"passAsFile and checks are reproduced", derivation(map[string]string{"passAsFile": "a", "a": "1", "allowedReferences": ""}), ""},
		{"impure", derivation(map[string]string{"__impure": "1"}), "__impure"},
		{"references graph", derivation(map[string]string{"exportReferencesGraph": "g /nix/store/x"}), "exportReferencesGraph"},
		{"structured no-chroot", structured(t, map[string]any{"__noChroot": true}), "__noChroot"},
		{"structured discard refs", structured(t, map[string]any{"unsafeDiscardReferences": map[string]any{"out": true}}), "unsafeDiscardReferences"},
		{"floating output", &drv.Derivation{Outputs: map[string]string{"out": ""}}, "a content-addressed output (out) whose path is known only after the build"},
		{"content-addressed", &drv.Derivation{Outputs: map[string]string{"out": outPath, "dev": outPath + "-dev"}, OutputHashes: map[string]drv.OutputHash{"out": {HashAlgo: "r:sha256"}}}, "content-addressed outputs"},
	} {
		if got := Unsupported(c.d); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestOutputChecks(t *testing.T) {
	legacy := derivation(map[string]string{"allowedReferences": "/nix/store/a /nix/store/b", "disallowedRequisites": ""})
	got, err := OutputChecks(legacy)
	if err != nil {
		t.Fatal(err)
	}
	want := OutputCheck{Lists: map[string][]string{"allowedReferences": {"/nix/store/a", "/nix/store/b"}, "disallowedRequisites": {}}, IgnoreSelfRefs: true}
	for _, out := range []string{"out", "dev"} { // every output, self-references ignored
		c := got[out]
		if !c.IgnoreSelfRefs || c.MaxSize != nil || len(c.Lists) != 2 || !slices.Equal(c.Lists["allowedReferences"], want.Lists["allowedReferences"]) || len(c.Lists["disallowedRequisites"]) != 0 {
			t.Errorf("legacy %s: %+v, want %+v", out, c, want)
		}
	}
	if got, _ := OutputChecks(derivation(map[string]string{"stdenv": "/s"})); len(got) != 0 {
		t.Errorf("no checks: %+v", got)
	}
	// Structured: per output; top-level legacy names do not count.
	s := structured(t, map[string]any{"allowedReferences": []string{"/nix/store/ignored"},
		"outputChecks": map[string]any{"out": map[string]any{"disallowedReferences": []string{"/nix/store/c"}, "maxSize": 1000, "maxClosureSize": 5000}}})
	got, err = OutputChecks(s)
	if err != nil {
		t.Fatal(err)
	}
	out := got["out"]
	if len(got) != 1 || out.IgnoreSelfRefs || out.MaxSize == nil || *out.MaxSize != 1000 || out.MaxClosureSize == nil || *out.MaxClosureSize != 5000 ||
		!slices.Equal(out.Lists["disallowedReferences"], []string{"/nix/store/c"}) || len(out.Lists) != 1 {
		t.Errorf("structured: %+v", got)
	}
	if _, err := OutputChecks(structured(t, map[string]any{"outputChecks": "nonsense"})); err == nil || !strings.Contains(err.Error(), "outputChecks") {
		t.Errorf("malformed outputChecks: %v", err)
	}
	if _, err := OutputChecks(derivation(map[string]string{"__json": "{"})); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("malformed __json: %v", err)
	}
}

// The structured attributes' files, as Nix writes them: .attrs.json with
// the outputs' paths and numbers as written, .attrs.sh with the values
// bash can hold.
func TestAttrsFiles(t *testing.T) {
	d := derivation(map[string]string{"__json": `{"name":"x","big":12345678901234567890,"ok":true,"no":false,"none":null,` +
		`"flags":["--a","it's"],"env":{"B":"2","A":"1"},"nested":[["x"]],"deep":{"a":{"b":1}},"not-a-name":"v","outputs":["out","dev"]}`})
	js, sh, err := AttrsFiles(d)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]json.RawMessage
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if string(back["big"]) != "12345678901234567890" {
		t.Errorf(".attrs.json big number: %s", back["big"])
	}
	if string(back["outputs"]) != `{"dev":"`+outPath+`-dev","out":"`+outPath+`"}` {
		t.Errorf(".attrs.json outputs: %s", back["outputs"])
	}
	wantSh := strings.Join([]string{
		"declare big=12345678901234567890",
		"declare -A env=(['A']='1' ['B']='2' )",
		"declare -a flags=('--a' 'it'\\''s' )",
		"declare name='x'",
		"declare no=",
		"declare none=''",
		"declare ok=1",
		"declare -A outputs=(['dev']='" + outPath + "-dev' ['out']='" + outPath + "' )",
	}, "\n") + "\n"
	if string(sh) != wantSh {
		t.Errorf(".attrs.sh:\n%s\nwant:\n%s", sh, wantSh)
	}
	if js, sh, err := AttrsFiles(derivation(map[string]string{"stdenv": "/s"})); js != nil || sh != nil || err != nil {
		t.Errorf("without structured attributes: %q %q %v", js, sh, err)
	}
}

func TestBuilderEnvAndPassAsFile(t *testing.T) {
	d := derivation(map[string]string{"passAsFile": "script missing", "script": "echo hi", "other": "1"})
	env := BuilderEnv(d, 3)
	files := PassAsFiles(d)
	if len(files) != 1 || files[0].Attr != "script" || string(files[0].Data) != "echo hi" || !strings.HasPrefix(files[0].Name, ".attr-") {
		t.Fatalf("passAsFile files: %+v", files)
	}
	if _, ok := env["script"]; ok || env["scriptPath"] != "/build/"+files[0].Name || env["other"] != "1" || env["NIX_BUILD_CORES"] != "3" {
		t.Errorf("builder environment: %v", env)
	}
	if _, ok := env["missingPath"]; ok {
		t.Error("a passAsFile name without an attribute got a file")
	}
	s := structured(t, map[string]any{"name": "x", "secret": "y"})
	env = BuilderEnv(s, 1)
	if _, ok := env["secret"]; ok || env["NIX_ATTRS_JSON_FILE"] != "/tmp/nix-build-x.drv-0/.attrs.json" {
		t.Errorf("structured environment: %v", env)
	}
	if PassAsFiles(s) != nil {
		t.Error("structured attributes have no passAsFile files")
	}
	texts := AttrTexts(s)
	if texts["secret"] != "y" || !maps.Equal(map[string]string{"name": texts["name"]}, map[string]string{"name": "x"}) {
		t.Errorf("attribute texts: %v", texts)
	}
}

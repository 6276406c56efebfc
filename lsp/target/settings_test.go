package target

import "testing"

func TestSettings(t *testing.T) {
	s := ParseSettings([]byte(`{"nixlayer": {"target": {"file": "default.nix", "attr": "hello"}}}`), Settings{})
	if tg := s.targetFor("/w/pkgs/x.nix", "/w"); tg.File != "/w/default.nix" || tg.Attr != "hello" {
		t.Errorf("target %+v", tg)
	}
	s = ParseSettings([]byte(`{"target": {"expr": "import ./x.nix {}"}}`), Settings{})
	if tg := s.targetFor("/w/x.nix", "/w"); tg.Expr == "" || tg.File != "" {
		t.Errorf("expr target %+v", tg)
	}
	if tg := (Settings{}).targetFor("/w/x.nix", "/w"); tg.File != "/w/x.nix" {
		t.Errorf("default target %+v", tg)
	}
	for ref, want := range map[string]string{".#hello": "/w#hello", "sub#x": "/w/sub#x", ".": "/w", "path:/src#y": "path:/src#y", "/abs#z": "/abs#z"} {
		s = ParseSettings([]byte(`{"target": {"flake": "`+ref+`"}}`), Settings{})
		if tg := s.targetFor("/w/x.nix", "/w"); tg.Flake != want || tg.File != "" {
			t.Errorf("flake target %q: %+v, want %s", ref, tg, want)
		}
	}
	if s := ParseSettings([]byte(`[1,2]`), Settings{Target: &Target{Attr: "keep"}}); s.Target == nil || s.Target.Attr != "keep" {
		t.Errorf("malformed settings replaced the old ones: %+v", s)
	}
}

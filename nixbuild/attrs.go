package nixbuild

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"

	"github.com/nixlayer/nixlayer/drv"
)

// Attrs are the structured attributes of d (__json decoded, values left
// raw), nil when d does not use them. The one place __json is read.
func Attrs(d *drv.Derivation) (map[string]json.RawMessage, error) {
	if !d.StructuredAttrs() {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(d.Env["__json"]), &m); err != nil {
		return nil, fmt.Errorf("%s: structured attributes are not valid JSON: %w", d.Path, err)
	}
	return m, nil
}

// Attributes are d's attributes as text: the environment, and with
// structured attributes each top-level value of __json as JSON.
func Attributes(d *drv.Derivation) (map[string]string, error) {
	attrs, err := Attrs(d)
	if err != nil {
		return nil, err
	}
	raw := map[string]string{}
	for k, v := range attrs {
		raw[k] = string(v)
	}
	for k, v := range d.Env {
		if !d.StructuredAttrs() || k != "__json" {
			raw[k] = v
		}
	}
	return raw, nil
}

// AttrTexts are d's attributes as the builder's bash sees them: the
// environment, or with structured attributes also the strings of __json
// (where a package's own phases and hooks are).
func AttrTexts(d *drv.Derivation) map[string]string {
	texts := maps.Clone(d.Env)
	attrs, _ := Attrs(d)
	for k, raw := range attrs {
		var v string
		if json.Unmarshal(raw, &v) == nil {
			texts[k] = v
		}
	}
	return texts
}

// AttrsFiles are the .attrs.json and .attrs.sh Nix writes into the build
// directory of a structured-attrs derivation (nil, nil for another): the
// attributes with the outputs' paths, and their bash declarations.
func AttrsFiles(d *drv.Derivation) (attrsJSON, attrsSh []byte, err error) {
	raw, err := Attrs(d)
	if raw == nil || err != nil {
		return nil, nil, err
	}
	attrs := make(map[string]any, len(raw))
	for k, v := range raw {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber() // numbers as Nix wrote them
		var x any
		if err := dec.Decode(&x); err != nil {
			return nil, nil, fmt.Errorf("%s: structured attributes: %w", d.Path, err)
		}
		attrs[k] = x
	}
	outs := map[string]any{}
	for name, p := range d.Outputs {
		outs[name] = p
	}
	attrs["outputs"] = outs
	js, err := json.Marshal(attrs)
	if err != nil {
		return nil, nil, err
	}
	return js, []byte(attrsShell(attrs)), nil
}

var shVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// attrsShell renders structured attributes as bash declarations the way
// Nix does: simple values as scalars, lists of simple values as indexed
// arrays, objects of simple values as associative arrays; others skipped.
func attrsShell(attrs map[string]any) string {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if !shVarName.MatchString(k) {
			continue
		}
		switch v := attrs[k].(type) {
		case []any:
			var items []string
			ok := true
			for _, x := range v {
				s, simple := simpleValue(x)
				if !simple {
					ok = false
					break
				}
				items = append(items, s+" ")
			}
			if ok {
				fmt.Fprintf(&b, "declare -a %s=(%s)\n", k, strings.Join(items, ""))
			}
		case map[string]any:
			ik := make([]string, 0, len(v))
			for x := range v {
				ik = append(ik, x)
			}
			sort.Strings(ik)
			var items []string
			ok := true
			for _, x := range ik {
				s, simple := simpleValue(v[x])
				if !simple {
					ok = false
					break
				}
				items = append(items, "["+shellEscape(x)+"]="+s+" ")
			}
			if ok {
				fmt.Fprintf(&b, "declare -A %s=(%s)\n", k, strings.Join(items, ""))
			}
		default:
			if s, simple := simpleValue(v); simple {
				fmt.Fprintf(&b, "declare %s=%s\n", k, s)
			}
		}
	}
	return b.String()
}

func simpleValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return shellEscape(v), true
	case json.Number:
		return v.String(), true
	case bool:
		if v {
			return "1", true
		}
		return "", true
	case nil:
		return "''", true
	}
	return "", false
}

func shellEscape(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

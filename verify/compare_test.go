package verify

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree makes a tree under dir/name: "->T" makes a symlink to T, a name
// ending in "/" a directory, a name starting with "x:" an executable.
func tree(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(dir, "out")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if n, ok := strings.CutPrefix(name, "x:"); ok {
			name, mode = n, 0o755
		}
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(content[2:], p)
		default:
			err = os.WriteFile(p, []byte(content), mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCompare(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB, past one read
	gzip := "\x1f\x8b\x08\x00" + strings.Repeat("z", 20)
	elf := "\x7fELF\x02\x01\x01" + strings.Repeat("\x00", 57)
	cases := []struct {
		name           string
		layered, clean map[string]string
		want           []string // "path: why"
	}{
		{"identical trees", map[string]string{"bin/hello": "hi", "lib/": "", "l": "->bin/hello"}, map[string]string{"bin/hello": "hi", "lib/": "", "l": "->bin/hello"}, nil},
		{"content differs, at the byte", map[string]string{"a": "hello world"}, map[string]string{"a": "hello World"}, []string{"a: content differs from byte 6"}},
		{"content differs past the first read", map[string]string{"a": big + "x"}, map[string]string{"a": big + "y"}, []string{"a: content differs from byte 131072"}},
		{"size differs", map[string]string{"a": "abc"}, map[string]string{"a": "abcd"}, []string{"a: size differs (3 vs 4 bytes)"}},
		{"only in one of them", map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1", "c": "3"}, []string{"b: only in the layered build", "c: only in Nix's build"}},
		{"file type differs", map[string]string{"a": "1"}, map[string]string{"a/": ""}, []string{"a: file type differs"}},
		{"executable bit differs", map[string]string{"x:run": "#!/bin/sh"}, map[string]string{"run": "#!/bin/sh"}, []string{"run: executable bit differs"}},
		{"symlink target differs", map[string]string{"l": "->a"}, map[string]string{"l": "->b"}, []string{"l: symlink target differs: a vs b"}},
		{"gzip named", map[string]string{"m.gz": gzip + "1"}, map[string]string{"m.gz": gzip + "2"}, []string{"m.gz: content differs from byte 24 (gzip payload: compressed bytes depend on the path)"}},
		{"ELF named", map[string]string{"bin/p": elf + "1"}, map[string]string{"bin/p": elf + "2"}, []string{"bin/p: content differs from byte 64 (ELF: a build-id or a split path string?)"}},
		{"two empty trees", nil, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := tree(t, t.TempDir(), c.layered), tree(t, t.TempDir(), c.clean)
			diffs, err := Compare(a, b)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range diffs {
				got = append(got, d.Path+": "+d.Why)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
	// A single-file output.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("two"), 0o644)
	diffs, err := Compare(filepath.Join(dir, "a"), filepath.Join(dir, "b"))
	if err != nil || len(diffs) != 1 || diffs[0].Path != "." || diffs[0].Why != "content differs from byte 0" {
		t.Errorf("single files: %+v %v", diffs, err)
	}
}

func TestFirstDifference(t *testing.T) {
	block := bytes.Repeat([]byte{7}, 64<<10)
	for _, c := range []struct {
		name string
		a, b []byte
		want int64
	}{
		{"empty", nil, nil, -1},
		{"equal across blocks", append(block, 1, 2), append(block, 1, 2), -1},
		{"first byte", []byte{1}, []byte{2}, 0},
		{"one is a prefix", []byte{1, 2}, []byte{1, 2, 3}, 2},
		{"at a block's end", append(block[:len(block)-1:len(block)-1], 9), block, int64(len(block) - 1)},
		{"in the second block", append(block, 1), append(block, 2), int64(len(block))},
	} {
		got, err := firstDifference(bytes.NewReader(c.a), bytes.NewReader(c.b))
		if err != nil || got != c.want {
			t.Errorf("%s: %d, %v; want %d", c.name, got, err, c.want)
		}
	}
}

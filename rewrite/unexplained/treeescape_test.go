package unexplained_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlayer/nixlayer/internal/treefile"
	"github.com/nixlayer/nixlayer/rewrite"
	"github.com/nixlayer/nixlayer/rewrite/unexplained"
)

// An output too big to read whole may carry any entry's bytes.
func TestHugeOutputMakesReachUnsure(t *testing.T) {
	tree := t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "obj"), []byte(strings.Repeat("x", 64)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	big := filepath.Join(out, "big")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, treefile.MaxCompared+1); err != nil {
		t.Fatal(err)
	}
	reach, err := unexplained.Reaches(tree, []rewrite.Unexplained{{Path: "obj", Strays: rewrite.Strays{Offsets: []int64{0}}}}, func(p string) string { return p }, map[string]string{"out": out})
	if err != nil {
		t.Fatal(err)
	}
	if reach[0].Rule != rewrite.RuleUnsure || reach[0].Output != "out/big" {
		t.Errorf("reach %+v, want unsure through out/big", reach[0])
	}
}

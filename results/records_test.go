package results

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixlayer/nixlayer/events"
)

// A record an earlier nixlayer named after the .drv's file name is found
// and takes its digest name; a stale one under the old name goes.
func TestResultsRenamesOldRecords(t *testing.T) {
	cache := t.TempDir()
	status := filepath.Join(cache, "status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, r Record) {
		data, _ := json.Marshal(r)
		if err := os.WriteFile(filepath.Join(status, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := "/nix/store/00000000000000000000000000000000-a.drv"
	b := "/nix/store/11111111111111111111111111111111-b.drv"
	write(filepath.Base(a)+".json", Record{Drv: a, State: events.StateVerified})
	write(filepath.Base(b)+".json", Record{Drv: b, State: events.StateProvisional})
	write(filepath.Base(File(cache, b)), Record{Drv: b, State: events.StateVerified})
	all, err := List(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(all), all)
	}
	for _, old := range []string{a, b} {
		if _, err := os.Lstat(filepath.Join(status, filepath.Base(old)+".json")); err == nil {
			t.Errorf("the old record of %s is still there", old)
		}
	}
	if r, err := Of(cache, a); err != nil || r == nil || r.State != events.StateVerified {
		t.Errorf("Of(a) = %+v, %v", r, err)
	}
	if r, err := Of(cache, b); err != nil || r == nil || r.State != events.StateVerified {
		t.Errorf("Of(b) = %+v, %v: the newer record must win", r, err)
	}
}

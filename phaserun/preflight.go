package phaserun

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nixlayer/nixlayer/layers"
	"github.com/nixlayer/nixlayer/nixstore"
	"github.com/nixlayer/nixlayer/sandbox"
)

// MinFreeSpace is the free space a layered build needs in the cache and
// in the Nix store before it is started.
const MinFreeSpace = 512 << 20

// preflightValid is how long a successful bubblewrap check is trusted.
const preflightValid = 10 * time.Minute

// Preflight checks what every layered build needs on this machine: a
// writable cache directory with room, room in the Nix store, and
// bubblewrap able to create a build's namespaces. Bubblewrap's success is
// remembered in the cache (per bubblewrap binary, for ten minutes), so
// calling Preflight before each build costs a few stat calls. The hook
// declines with the error instead of accepting a build it would fail.
func Preflight(ctx context.Context, cacheDir string) error {
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return fmt.Errorf("cache directory %s cannot be created: %w", cacheDir, err)
	}
	f, err := os.CreateTemp(cacheDir, ".probe-*")
	if err != nil {
		return fmt.Errorf("cache directory %s is not writable: %w", cacheDir, err)
	}
	f.Close()
	os.Remove(f.Name())
	for _, dir := range []string{cacheDir, nixstore.StoreDir()} {
		if free, err := layers.FreeSpace(dir); err == nil && free < MinFreeSpace {
			return fmt.Errorf("only %d MiB free in %s (a layered build wants %d MiB)", free>>20, dir, MinFreeSpace>>20)
		}
	}
	bwrap, err := sandbox.Bwrap()
	if err != nil {
		return err
	}
	stamp := bwrapStamp(bwrap)
	mark := filepath.Join(cacheDir, "hook", "bwrap-ok.json")
	var seen struct {
		Stamp string    `json:"stamp"`
		At    time.Time `json:"at"`
	}
	if data, err := os.ReadFile(mark); err == nil && json.Unmarshal(data, &seen) == nil &&
		seen.Stamp == stamp && time.Since(seen.At) < preflightValid && !seen.At.After(time.Now()) {
		return nil
	}
	if err := sandbox.Check(ctx); err != nil {
		os.Remove(mark)
		return err
	}
	seen.Stamp, seen.At = stamp, time.Now()
	if data, err := json.Marshal(seen); err == nil {
		os.MkdirAll(filepath.Dir(mark), 0o700)
		os.WriteFile(mark, data, 0o600)
	}
	return nil
}

// bwrapStamp identifies a bubblewrap binary and the kernel it runs on.
func bwrapStamp(bwrap string) string {
	var uts syscall.Utsname
	syscall.Uname(&uts)
	release := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		release = append(release, byte(c))
	}
	fi, err := os.Stat(bwrap)
	if err != nil {
		return bwrap
	}
	return fmt.Sprintf("%s %d %d %s", bwrap, fi.Size(), fi.ModTime().UnixNano(), release)
}

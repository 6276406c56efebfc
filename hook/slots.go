package hook

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Nix does not count builds it hands to a hook against max-jobs, so the
// hook limits itself: at most max-jobs layered builds per Nix process at
// once, each holding a slot (an flock on a file named after the Nix
// process) until the accepting hook process exits.

// takeSlot tries to take one of n slots of the Nix process nixPID without
// waiting. It returns the held file (nil when every slot is taken); the
// slot is released when the process exits.
func takeSlot(dir string, nixPID, n int) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating slot directory: %w", err)
	}
	removeDeadSlots(dir)
	for i := 0; i < n; i++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d-%d.lock", nixPID, i)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening slot: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return f, nil
		}
		f.Close()
	}
	return nil, nil
}

// removeDeadSlots deletes the slot files of Nix processes that are gone.
func removeDeadSlots(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.SplitN(e.Name(), "-", 2)[0])
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

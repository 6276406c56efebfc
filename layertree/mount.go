package layertree

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nixlayer/nixlayer/layers"
)

// MountRecord is a layer mounted on the host by `nixlayer mount`. The
// store's mount count of the layer stays raised until `nixlayer umount`,
// which is what keeps gc away from it.
type MountRecord struct {
	Dir     string    `json:"dir"`
	Layer   string    `json:"layer"`
	Package string    `json:"package"`
	Phase   string    `json:"phase"`
	Created time.Time `json:"created"`
	// MadeDir: nixlayer created Dir and removes it again on umount.
	MadeDir bool `json:"madeDir,omitempty"`
}

func (t *Trees) mountFile(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return filepath.Join(t.cacheDir, "mounts", hex.EncodeToString(h[:8])+".json")
}

// DefaultMountDir is where `nixlayer mount` puts layer l, of phase, without
// a DIR.
func (t *Trees) DefaultMountDir(l *layers.Layer, phase string) string {
	name := l.Meta.DrvName + "-" + phase
	// A phase's name is the derivation's to choose: one that is not a
	// plain path element gives way to the layer's id.
	if phase == "" || strings.ContainsAny(phase, "/\x00") {
		name = layers.Short(l.ID)
	}
	return filepath.Join(t.cacheDir, "mnt", name)
}

// Mount makes the merged tree of layer l, of phase, visible at dir,
// read-only (a read-only bind of the layer's mount point).
func (t *Trees) Mount(l *layers.Layer, phase, dir string) (*MountRecord, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(t.mountFile(dir)); err == nil {
		return nil, fmt.Errorf("%s is already a nixlayer mount: nixlayer umount %s first", dir, dir)
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create mount directory: %w", err)
	}
	src, err := t.layers.Mount(l.ID)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*MountRecord, error) {
		t.layers.Unmount(l.ID)
		return nil, err
	}
	if err := syscall.Mount(src, dir, "", syscall.MS_BIND, ""); err != nil {
		return fail(fmt.Errorf("bind %s on %s: %w", src, dir, err))
	}
	if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		return fail(fmt.Errorf("make %s read-only: %w", dir, err))
	}
	rec := &MountRecord{Dir: dir, Layer: l.ID, Package: l.Meta.DrvName, Phase: phase, Created: time.Now(), MadeDir: statErr != nil}
	data, _ := json.Marshal(rec)
	os.MkdirAll(filepath.Dir(t.mountFile(dir)), 0o700)
	if err := os.WriteFile(t.mountFile(dir), data, 0o600); err != nil {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		return fail(fmt.Errorf("record mount: %w", err))
	}
	return rec, nil
}

// Mounts lists the layers mounted by `nixlayer mount`.
func (t *Trees) Mounts() ([]MountRecord, error) {
	files, _ := filepath.Glob(filepath.Join(t.cacheDir, "mounts", "*.json"))
	var out []MountRecord
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r MountRecord
		if json.Unmarshal(data, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Unmount removes a mount made by Mount and releases the layer.
func (t *Trees) Unmount(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(t.mountFile(dir))
	if err != nil {
		return fmt.Errorf("%s is not mounted by nixlayer (see nixlayer ls for mounted layers)", dir)
	}
	var rec MountRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("mount record of %s: %w", dir, err)
	}
	if err := syscall.Unmount(dir, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("unmount %s: %w (is a program still using it?)", dir, err)
	}
	if err := t.layers.Unmount(rec.Layer); err != nil {
		return err
	}
	if rec.MadeDir {
		os.Remove(dir) // only if empty
	}
	return os.Remove(t.mountFile(dir))
}

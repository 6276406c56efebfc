package nixstore

import (
	"context"
	"crypto/sha1"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"golang.org/x/sys/unix"

	"github.com/nixlayer/nixlayer/internal/nixtest"
)

// The store's index must give nix-store's answer for every kind of path:
// valid, never registered, present on disk but not registered (a build
// that died, a path being collected), and deleted.
func TestValidityFromTheIndexIsNixStores(t *testing.T) {
	needLocalStore(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "v-"+nixtest.Salt())
	nixtest.Write(t, file, "valid\n", 0o644)
	valid := nixtest.Out(t, "nix-store", "--add", file)
	nixtest.Write(t, file+"-gone", "deleted\n", 0o644)
	deleted := nixtest.Out(t, "nix-store", "--add", file+"-gone")
	nixtest.Out(t, "nix-store", "--delete", deleted)
	unregistered := filepath.Join(StoreDir(), strings.Repeat("0", 31)+"1-unregistered-"+nixtest.Salt())
	if err := os.Mkdir(unregistered, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(unregistered)
	never := filepath.Join(StoreDir(), strings.Repeat("0", 32)+"-never")
	paths := []string{valid, deleted, unregistered, never}

	db := storeDBPath()
	if db == "" {
		t.Fatal("root may not use the local store's index")
	}
	fromIndex, ok := invalidInDB(ctx, db, paths)
	if !ok {
		t.Fatal("root could not read the local store's index")
	}
	out := nixtest.Out(t, "nix-store", append([]string{"--check-validity", "--print-invalid"}, paths...)...)
	if want := strings.Fields(out); !reflect.DeepEqual(fromIndex, want) {
		t.Fatalf("invalid from the index = %q, nix-store says %q", fromIndex, want)
	}
	if ok, err := AllValid(ctx, []string{valid}); err != nil || !ok {
		t.Fatalf("AllValid(%s) = %v, %v", valid, ok, err)
	}
}

// needLocalStore skips unless nix-store runs here and this process may use
// the local store directly (root); it keeps Nix off binary caches.
func needLocalStore(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("nix-store not installed (apt-get install nix-bin)")
	}
	nixtest.NeedRoot(t)
	nixtest.Offline(t)
}

// A store other than the default local one has another index: validity
// is then asked of nix-store.
func TestValidityOfAnotherStoreAsksNixStore(t *testing.T) {
	for _, env := range [][2]string{
		{"NIX_REMOTE", "ssh://builder"},
		{"NIX_REMOTE", "/tmp/chroot-store"},
		{"NIX_CONFIG", "substituters =\nstore = /tmp/chroot-store"},
	} {
		t.Run(env[0]+"="+env[1], func(t *testing.T) {
			t.Setenv(env[0], env[1])
			if db := storeDBPath(); db != "" {
				t.Fatalf("storeDBPath = %q, want none", db)
			}
		})
	}
	for text, want := range map[string]bool{
		"store = daemon\n":                      false,
		"store=auto":                            false,
		"# store = /x\nsubstituters =":          false,
		"sandbox = true\nstore = local?root=/x": true,
		"store = /tmp/chroot":                   true,
	} {
		t.Setenv("NIX_CONF_DIR", t.TempDir())
		t.Setenv("NIX_USER_CONF_FILES", filepath.Join(t.TempDir(), "none.conf"))
		t.Setenv("NIX_CONFIG", text)
		if got := storeIsConfigured(); got != want {
			t.Errorf("storeIsConfigured with NIX_CONFIG %q = %v, want %v", text, got, want)
		}
	}
}

// A store set in a file nix.conf includes is found as Nix finds it.
func TestStoreSetThroughAnInclude(t *testing.T) {
	conf := t.TempDir()
	nixtest.Write(t, filepath.Join(conf, "nix.conf"), "sandbox = true\ninclude extra.conf\n", 0o644)
	nixtest.Write(t, filepath.Join(conf, "extra.conf"), "store = /tmp/chroot-store\n", 0o644)
	t.Setenv("NIX_CONF_DIR", conf)
	t.Setenv("NIX_USER_CONF_FILES", filepath.Join(t.TempDir(), "none.conf"))
	t.Setenv("NIX_CONFIG", "")
	if db := storeDBPath(); db != "" {
		t.Fatalf("storeDBPath = %q with a store set through an include, want none", db)
	}
}

// A result link made in-process is a root Nix's collector sees, named as
// nix-store names it, and is refused for a path that is not valid.
func TestRootMadeLocallyIsNixs(t *testing.T) {
	needLocalStore(t)
	ctx := context.Background()
	dir := t.TempDir()
	nixtest.Write(t, filepath.Join(dir, "f"), "rooted "+nixtest.Salt()+"\n", 0o644)
	valid := nixtest.Out(t, "nix-store", "--add", filepath.Join(dir, "f"))

	ours, theirs := filepath.Join(dir, "result"), filepath.Join(dir, "result-nix")
	if done, err := addValidRootLocally(ctx, valid, ours); !done || err != nil {
		t.Fatalf("addValidRootLocally = %v, %v", done, err)
	}
	nixtest.Out(t, "nix-store", "--add-root", theirs, "--indirect", "--realise", valid)
	// Newer Nix quotes the root's path.
	roots := strings.ReplaceAll(nixtest.Out(t, "nix-store", "--gc", "--print-roots"), `"`, "")
	for _, link := range []string{ours, theirs} {
		if !strings.Contains(roots, link+" -> "+valid) {
			t.Errorf("the collector does not see %s -> %s among its roots:\n%s", link, valid, roots)
		}
	}
	// The auto root of nix-store's link has the name this package gives.
	sum := sha1.Sum([]byte(theirs))
	if target, err := os.Readlink(filepath.Join("/nix/var/nix/gcroots/auto", nixbase32.EncodeToString(sum[:]))); err != nil || target != theirs {
		t.Errorf("nix-store's auto root for %s: %q, %v", theirs, target, err)
	}

	never := filepath.Join(StoreDir(), strings.Repeat("0", 32)+"-never")
	if err := AddValidGCRoot(ctx, never, filepath.Join(dir, "result-never")); err == nil {
		t.Fatal("AddValidGCRoot accepted a path that is not valid")
	}
	if _, err := os.Lstat(filepath.Join(dir, "result-never")); err == nil {
		t.Fatal("a link was left to a path that is not valid")
	}

	// While a collection runs, the root is nix-store's to hand over.
	lock, err := os.OpenFile("/nix/var/nix/gc.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if done, _ := addValidRootLocally(ctx, valid, filepath.Join(dir, "result-during-gc")); done {
		t.Fatal("a root was made in-process while the collector held its lock")
	}
}

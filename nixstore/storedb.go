package nixstore

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/sqlite/nix_v10"
	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite" // the store's own index, read as Nix reads it
)

// Validity is answered from the local store's own index (its SQLite
// database) when this process may use that store directly, as Nix itself
// does for root or a single-user install: a no-op rebuild then costs no
// second process. Everyone else, and any doubt or error, asks nix-store.

// storeDBPath returns the local store's database, or "" when validity
// must be asked of nix-store: a store other than the default local one
// (NIX_REMOTE, a `store` setting), or a database this user may not use
// directly (a daemon's users).
func storeDBPath() string {
	switch os.Getenv("NIX_REMOTE") {
	case "", "auto", "local", "daemon":
	default:
		return ""
	}
	if storeIsConfigured() {
		return ""
	}
	state := os.Getenv("NIX_STATE_DIR")
	if state == "" {
		state = "/nix/var/nix"
	}
	db := filepath.Join(state, "db", "db.sqlite")
	if unix.Access(db, unix.W_OK) != nil || unix.Access(filepath.Dir(db), unix.W_OK) != nil {
		return ""
	}
	return db
}

// storeIsConfigured reports whether the Nix configuration this process
// reads (system and user nix.conf with their includes, $NIX_CONFIG) names
// a store other than the default local one (a chroot store has another
// database). A configuration that cannot be read counts as naming one.
func storeIsConfigured() bool {
	files := []string{systemNixConf()}
	if user := os.Getenv("NIX_USER_CONF_FILES"); user != "" {
		files = append(files, filepath.SplitList(user)...)
	} else if cfg, err := os.UserConfigDir(); err == nil {
		files = append(files, filepath.Join(cfg, "nix", "nix.conf"))
	}
	other := false
	err := eachNixConfSetting(files, func(name string, values []string) {
		if name == "store" {
			other = len(values) != 1 || !slices.Contains([]string{"auto", "local", "daemon"}, values[0])
		}
	})
	return other || err != nil
}

// invalidInDB returns those of paths the store's index does not hold;
// ok is false when the index cannot be read (ask nix-store then).
func invalidInDB(ctx context.Context, dbPath string, paths []string) (invalid []string, ok bool) {
	// Read-only: nixlayer never writes Nix's database. The busy timeout
	// rides out a checkpoint of a Nix process writing at the same time.
	dsn := (&url.URL{Scheme: "file", Path: dbPath, RawQuery: "mode=ro&_pragma=busy_timeout(3000)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, false
	}
	defer db.Close()
	index := nix_v10.New(db) // Nix's schema and queries, as go-nix keeps them
	for _, p := range paths {
		switch _, err := index.QueryPathInfo(ctx, p); err {
		case nil:
		case sql.ErrNoRows:
			invalid = append(invalid, p)
		default: // a schema this code does not know, a lock held too long
			return nil, false
		}
	}
	return invalid, true
}

// addValidRootLocally makes link a symlink to path and an indirect GC root
// of it, as nix-store --add-root --indirect does, when path is valid; done
// is false when nix-store must do it (no direct access to the store, or a
// garbage collection running). A shared lock on gc.lock, the lock Nix's
// collector holds exclusively while it runs, keeps path from being
// collected between the validity check and the root that protects it.
func addValidRootLocally(ctx context.Context, path, link string) (done bool, err error) {
	dbPath := storeDBPath()
	if dbPath == "" {
		return false, nil
	}
	stateDir := filepath.Dir(filepath.Dir(dbPath))
	lock, err := os.OpenFile(filepath.Join(stateDir, "gc.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, nil
	}
	defer lock.Close() // closing releases the lock
	if unix.Flock(int(lock.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil {
		return false, nil // a collection runs: nix-store hands the root to it
	}
	invalid, ok := invalidInDB(ctx, dbPath, []string{path})
	if !ok {
		return false, nil
	}
	if len(invalid) > 0 {
		return true, fmt.Errorf("%s is not valid", path)
	}
	if err := replaceSymlink(path, link); err != nil {
		return true, err
	}
	sum := sha1.Sum([]byte(link))
	auto := filepath.Join(stateDir, "gcroots", "auto", nixbase32.EncodeToString(sum[:]))
	if err := replaceSymlink(link, auto); err != nil {
		return true, fmt.Errorf("registering %s as a GC root: %w", link, err)
	}
	return true, nil
}

// replaceSymlink makes name a symlink to target in one step (a rename), so
// no reader sees it missing.
func replaceSymlink(target, name string) error {
	tmp := fmt.Sprintf("%s.tmp-%d", name, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("creating %s: %w", name, err)
	}
	return nil
}

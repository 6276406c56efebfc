package nixstore

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

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

// storeIsConfigured reports whether a Nix configuration this process
// reads names a store (a chroot store has another database).
func storeIsConfigured() bool {
	if setsStore(strings.NewReader(os.Getenv("NIX_CONFIG"))) {
		return true
	}
	confDir := os.Getenv("NIX_CONF_DIR")
	if confDir == "" {
		confDir = "/etc/nix"
	}
	files := []string{filepath.Join(confDir, "nix.conf")}
	if user := os.Getenv("NIX_USER_CONF_FILES"); user != "" {
		files = append(files, filepath.SplitList(user)...)
	} else if cfg, err := os.UserConfigDir(); err == nil {
		files = append(files, filepath.Join(cfg, "nix", "nix.conf"))
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		set := setsStore(f)
		f.Close()
		if set {
			return true
		}
	}
	return false
}

// setsStore reports whether a nix.conf text sets `store` to anything but
// the default local store.
func setsStore(r io.Reader) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.TrimSpace(key) != "store" {
			continue
		}
		switch strings.TrimSpace(value) {
		case "auto", "local", "daemon":
		default:
			return true
		}
	}
	return false
}

// invalidInDB returns those of paths the store's index does not hold;
// ok is false when the index cannot be read (ask nix-store then).
func invalidInDB(ctx context.Context, paths []string) (invalid []string, ok bool) {
	dbPath := storeDBPath()
	if dbPath == "" {
		return nil, false
	}
	// Read-only: nixlayer never writes Nix's database. The busy timeout
	// rides out a checkpoint of a Nix process writing at the same time.
	dsn := (&url.URL{Scheme: "file", Path: dbPath, RawQuery: "mode=ro&_pragma=busy_timeout(3000)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, false
	}
	defer db.Close()
	for _, p := range paths {
		var id int64
		switch err := db.QueryRowContext(ctx, "SELECT id FROM ValidPaths WHERE path = ?", p).Scan(&id); err {
		case nil:
		case sql.ErrNoRows:
			invalid = append(invalid, p)
		default: // a schema this code does not know, a lock held too long
			return nil, false
		}
	}
	return invalid, true
}

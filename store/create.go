package store

// Creating a store. It is built aside and renamed into place once its meta
// is durable, so that a crash part way leaves no store rather than one Open
// would refuse as corrupt.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// create makes a new store at path, for open to open, and reports whether it
// did (false: another Open created it meanwhile). It builds the store in
// path+".new" and renames that into place once its meta is durable, so a
// crash while creating leaves no store (at most the temporary directory,
// removed by the next creation), never a store without its meta, which Open
// would refuse as corrupt. The temporary directory's lock keeps two creators
// apart; one that finds it held fails with errBusy.
func create(path string, opts Options) (bool, error) {
	tmp := path + ".new"
	if fi, err := os.Lstat(tmp); err == nil && !fi.IsDir() {
		// Not something a creation leaves; nothing to keep in it either.
		if err := os.Remove(tmp); err != nil {
			return false, fmt.Errorf("store: remove leftover: %w", err)
		}
	}
	if err := os.Mkdir(tmp, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("store: %w", err)
	}
	lock, err := lockDir(tmp, false)
	switch {
	case errors.Is(err, errBusy):
		return false, errBusy // another Open is creating the store
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // renamed into place by another creator: look again
	case err != nil:
		return false, fmt.Errorf("store: lock %s: %w", tmp, err)
	}
	defer lock.release()
	// Holding the temporary directory's lock, look again: another creator
	// may have finished while this one waited.
	if kind, err := inspect(path); err != nil || kind != kindAbsent {
		return false, nil
	}
	// The leftover of a creation that crashed holds nothing (records are
	// only written after the rename): it goes, but for the LOCK file whose
	// lock is held.
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	for _, e := range ents {
		if e.Name() != "LOCK" {
			if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
				return false, fmt.Errorf("store: remove leftover: %w", err)
			}
		}
	}
	log := opts.Logger.With(zap.String("path", tmp))
	fsys, fsc := newFS(log)
	defer fsc.Close()
	o := pebbleOptions(log.Named("pebble"), fsys, lock.pebble, pebbleHooks{memTable: memTableFor(opts.MaxBytes)})
	o.ErrorIfExists = true
	db, err := openPebble(tmp, o)
	if err != nil {
		return false, err
	}
	err = initLayout(db, tmp, opts.PeerID)
	if cerr := closeErr(db, tmp); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	// An empty directory at path (all inspect allows, but for a LOCK file)
	// is replaced.
	for _, p := range []string{filepath.Join(path, "LOCK"), path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("store: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return true, syncDir(filepath.Dir(path))
}

// initLayout writes the meta, with peer as the owner unless it is empty,
// in one synced batch.
func initLayout(db *pebble.DB, path, peer string) (err error) {
	defer recoverPebble(path, &err)
	b := db.NewBatch()
	defer b.Close()
	if err := b.Set(tableMeta.key([]byte(metaVersion)), idKey(LayoutVersion), nil); err != nil {
		return err
	}
	created := []byte(time.Now().UTC().Format(time.RFC3339))
	if err := b.Set(tableMeta.key([]byte(metaCreated)), created, nil); err != nil {
		return err
	}
	if peer != "" {
		if err := b.Set(tableMeta.key([]byte(metaPeer)), []byte(peer), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: initialise %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: sync directory %s: %w", dir, err)
	}
	return nil
}

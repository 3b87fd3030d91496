package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The data directory: where "run" keeps its store (the exchanges it
// started and has not finished, what it received and the application has
// not handled yet, the dead letters), and where the outbox and deadletters
// commands find it.

// defaultDataDir is the data directory of the node whose peer ID is id:
// $XDG_STATE_HOME/p2pnode/<id>, or ~/.local/state/p2pnode/<id> when
// XDG_STATE_HOME is unset (or, as the XDG spec says to treat it, not an
// absolute path).
func defaultDataDir(id peer.ID) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no data directory: %v; give --data-dir DIR (or --ephemeral)", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return absPath(filepath.Join(base, "p2pnode", id.String())), nil
}

// dataDir is the data directory cfg names: data_dir, or the default for
// the peer ID of key id. It is absolute, for the listening event and the
// logs.
func (c *runConfig) dataDir(id peer.ID) (string, error) {
	if c.DataDir != "" {
		return absPath(c.DataDir), nil
	}
	return defaultDataDir(id)
}

// storeCap is the size cap of the node's store, in bytes: max_store_size,
// or the store's default.
func (c *runConfig) storeCap() int64 {
	if c.MaxStoreSize > 0 {
		return c.MaxStoreSize
	}
	return store.DefaultMaxBytes
}

// absPath makes a path absolute, or leaves it as it is if it cannot.
func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// openRunStore opens the store of the node with peer ID id, about to run
// in dir, capped at maxBytes (0: the store's default). The errors an operator meets are rewritten to say what to do: a
// directory in use (another p2pnode on it), a store of another node's key
// (its exchanges must not go out under this one), a file that is not a
// store (never replaced by an empty one).
func openRunStore(dir string, id peer.ID, maxBytes int64, log *zap.Logger) (*store.Store, error) {
	st, err := store.Open(dir, store.Options{PeerID: id.String(), MaxBytes: maxBytes, Logger: log.Named("store")})
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, store.ErrWrongPeer):
		return nil, fmt.Errorf("%w: data directory %s is another node's (give that node's --key, or this key its own --data-dir)", err, dir)
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("data directory %s is in use: another p2pnode is probably running on it, or an outbox or deadletters command is reading it (give each node its own --data-dir)", dir)
	case errors.Is(err, store.ErrCorrupt):
		return nil, fmt.Errorf("%w (the node will not start over it: move the store directory away to start with an empty store, losing the exchanges it holds)", err)
	case errors.Is(err, store.ErrVersion):
		return nil, fmt.Errorf("%w (a newer p2pnode wrote it: run that version)", err)
	}
	return nil, fmt.Errorf("data directory %s: %w", dir, err)
}

// openToolStore opens the store in dir for the outbox and deadletters
// commands, with readOnly for those that only read it: they write nothing
// (a read-write open replays the write-ahead log into an sstable, which a
// full disk has no room for). It never creates one: a directory without a
// store is an error, not an empty list. A running node holds the store; it
// is refused, and nothing is touched.
func openToolStore(dir string, readOnly bool) (*store.Store, error) {
	path := filepath.Join(dir, store.DirName)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no store in %s: no p2pnode run has used this data directory (check --data-dir, or --key)", dir)
	case errors.Is(err, syscall.ENOTDIR):
		return nil, fmt.Errorf("data directory %s is not a directory (check --data-dir)", dir)
	case err != nil:
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a store (a store is a directory)", path)
	}
	// No cap of its own: the node's (--max-store-size) may be larger than
	// the default, and a retry of its dead letters must not be refused as
	// full by a cap the node does not have. The tools add a record or two.
	st, err := store.Open(dir, store.Options{MaxBytes: math.MaxInt64, ReadOnly: readOnly})
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("the node on %s is running: stop it first, or give the --data-dir of a stopped node (a store has one user at a time)", dir)
	}
	return nil, err
}

// maxStdinTag is the largest stdin id among the tags of the outbox and the
// dead letters of st: run numbers the stdin commands without an id from
// the next one, so that an exchange the store gives back (resumed, or a
// dead letter retried) and a new one never share an id.
func maxStdinTag(st *store.Store) (uint64, error) {
	// A walk, not the lists: run starts with this, and the outbox may hold
	// a gigabyte of payloads.
	var m uint64
	note := func(tag string) {
		if id, ok := tagID(tag); ok && id > m {
			m = id
		}
	}
	ctx := context.Background()
	if err := st.EachOutgoing(ctx, func(o store.Outgoing) error { note(o.Tag); return nil }); err != nil {
		return 0, err
	}
	err := st.EachDeadLetter(ctx, func(d store.DeadLetter) error { note(d.Tag); return nil })
	return m, err
}

// tagID is the stdin id a tag carries: run tags every exchange it starts
// with its command's id, in decimal.
func tagID(tag string) (uint64, bool) {
	if tag == "" {
		return 0, false
	}
	id, err := strconv.ParseUint(tag, 10, 64)
	return id, err == nil
}

package main

// What run reads from disk before its node starts: the key, the allowlist
// or membership document, the routes, and the store in the data directory.

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// loadNodeFiles loads the files a node needs (key, allowlist or membership
// document, routes) and returns its p2p configuration, reading the
// membership document with loadDoc. Its own checks (version 1 as a genesis
// document) are chooseMembership's, which makes them only if version 1 is
// the version in force: a newer version saved in the data directory may
// have replaced an expired version 1.
func loadNodeFiles(cfg *runConfig, log *zap.Logger, loadDoc func(string) (*membership.Document, error)) (p2p.Config, error) {
	pcfg := cfg.nodeConfig()
	pcfg.Logger = log
	var err error
	if pcfg.Key, err = loadKey(cfg.Key); err != nil {
		return pcfg, err
	}
	if err := cfg.relaysNotSelf(pcfg.Key); err != nil {
		return pcfg, err
	}
	if cfg.Membership != "" {
		d, err := loadDoc(cfg.Membership)
		if err != nil {
			return pcfg, err
		}
		if pcfg.Allowlist, err = d.Allowlist(); err != nil {
			return pcfg, err
		}
	} else if pcfg.Allowlist, err = allowlist.Load(cfg.Allowlist); err != nil {
		return pcfg, err
	}
	if cfg.Routes != "" {
		if pcfg.Routes, err = allowlist.LoadRoutes(cfg.Routes); err != nil {
			return pcfg, err
		}
	}
	if pcfg.ListenAddrs, err = parseListenAddrs(cfg.Listen); err != nil {
		return pcfg, err
	}
	return pcfg, nil
}

// openStore opens the node's store, in --data-dir or the default directory
// of its key, before the node starts: a directory in use or a damaged
// store stops run here, before anything is printed. The stdin numbering
// continues after the ids of the exchanges the store will resume.
func (r *runner) openStore(pcfg p2p.Config) error {
	id, err := peer.IDFromPrivateKey(pcfg.Key)
	if err != nil {
		return err
	}
	if r.dataDir, err = r.cfg.dataDir(id); err != nil {
		return err
	}
	if r.store, err = openRunStore(r.dataDir, id, r.cfg.MaxStoreSize, r.log); err != nil {
		return err
	}
	r.life = r.store
	if r.hooks.store != nil {
		r.life = r.hooks.store(r.store)
	}
	last, err := maxStdinTag(r.store)
	if err != nil {
		r.closeStore()
		return err
	}
	r.parser.nextID = last + 1
	return nil
}

// closeStore closes the store, once the handler has closed. r.life stays:
// /readyz reads it until the process ends.
func (r *runner) closeStore() {
	if r.store == nil {
		return
	}
	if err := r.life.Close(); err != nil {
		r.log.Warn("closing the store", zap.Error(err))
	}
	r.store = nil
}

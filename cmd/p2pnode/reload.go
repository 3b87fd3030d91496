package main

import (
	"fmt"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// reload reads the allowlist and routes files again (on SIGHUP, and for
// "p2pnode allowlist reload"). The node subscribes to the list, so a peer
// that is no longer listed is disconnected by the reload itself. A file
// that fails to load leaves the old list or table in force; the error
// event names the file and line, and reload returns the first error.
func (r *runner) reload() error {
	var first error
	// With --membership the members decide the list: there is no file to
	// read again.
	if r.cfg.Membership == "" {
		if err := r.list.Reload(r.cfg.Allowlist); err != nil {
			r.out.emit(p2p.Error{Err: fmt.Errorf("reload: %w", err)})
			first = err
		} else {
			r.out.emit(reloadedEvent{Kind: "allowlist", File: r.cfg.Allowlist, Count: r.list.Len()})
		}
	}
	if r.routes == nil {
		return first
	}
	if err := r.routes.Reload(r.cfg.Routes); err != nil {
		r.out.emit(p2p.Error{Err: fmt.Errorf("reload: %w", err)})
		if first == nil {
			first = err
		}
	} else {
		r.out.emit(reloadedEvent{Kind: "routes", File: r.cfg.Routes, Count: len(r.routes.Rules())})
	}
	return first
}

// watch starts reloading the files whenever they change, when --watch asks
// for it. The returned function stops the watchers and waits for them, so
// no event is printed after it returns.
func (r *runner) watch() (stop func(), err error) {
	if !r.cfg.Watch {
		return func() {}, nil
	}
	var watchers []*allowlist.Watcher
	stop = func() {
		for _, w := range watchers {
			_ = w.Close()
		}
	}
	onError := func(err error) { r.out.emit(p2p.Error{Err: fmt.Errorf("reload: %w", err)}) }
	if r.cfg.Membership == "" {
		w, err := r.list.Watch(r.cfg.Allowlist, allowlist.WatchOptions{
			OnReload: func(allowlist.Change) {
				r.out.emit(reloadedEvent{Kind: "allowlist", File: r.cfg.Allowlist, Count: r.list.Len()})
			},
			OnError: onError,
		})
		if err != nil {
			return nil, err
		}
		watchers = append(watchers, w)
	}
	if r.routes != nil {
		w, err := r.routes.Watch(r.cfg.Routes, allowlist.WatchOptions{
			OnReload: func(allowlist.Change) {
				r.out.emit(reloadedEvent{Kind: "routes", File: r.cfg.Routes, Count: len(r.routes.Rules())})
			},
			OnError: onError,
		})
		if err != nil {
			stop()
			return nil, err
		}
		watchers = append(watchers, w)
	}
	return stop, nil
}

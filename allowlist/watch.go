package allowlist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long a watcher waits after the last change to the
// file before reloading it, when [WatchOptions.Debounce] is zero.
const DefaultDebounce = 100 * time.Millisecond

// WatchOptions configures [List.Watch] and [Routes.Watch].
type WatchOptions struct {
	// OnReload, if set, is called after each successful reload with what
	// changed. The Change is empty when the file's content did not change
	// the list, and always empty for a routing table, whose rules have no
	// identity to diff; call [Routes.Rules] for the new table.
	OnReload func(Change)
	// OnError, if set, is called when a reload fails; the old list or table
	// stays in force. The error names the file and, for a parse error, the
	// line.
	OnError func(error)
	// Debounce is how long to wait for the file to settle: editors write a
	// file in several steps, and reloading after the first could see it
	// half written. Zero means DefaultDebounce.
	Debounce time.Duration
}

// Watcher reloads a file whenever it changes. It is created by [List.Watch]
// or [Routes.Watch] and owns one goroutine, which Close stops.
//
// The callbacks run on that goroutine, one at a time; they must not call
// Close, which waits for the goroutine and would wait forever.
type Watcher struct {
	fsw  *fsnotify.Watcher
	stop chan struct{}
	done chan struct{}

	// link is the path watched; target, when that is a symbolic link, the
	// file it resolves to. target is written by retarget, before the
	// goroutine starts and then on it only.
	link, target watched

	closeOnce sync.Once
	closeErr  error
}

// Watch reloads the list from path whenever the file changes, as Reload
// does: a file that fails to parse is reported to opts.OnError and the list
// keeps its entries.
//
// Watch observes the file's directory, not the file, because editors and
// configuration tools replace a file by renaming a new one over it, which
// would silently end a watch on the old file. The directory must exist; the
// file need not, and is loaded when it appears. Watch does not load the
// file itself: call Load or Reload first.
//
// When path is a symbolic link, the directory of the file it resolves to is
// observed as well (a change there leaves the link's own directory
// untouched), and the link is resolved again at each reload, so a link
// pointed elsewhere is followed.
//
// For the safest updates, write the new file elsewhere in the same
// directory and rename it over path, as Save does.
func (l *List) Watch(path string, opts WatchOptions) (*Watcher, error) {
	return watchFile(path, opts, func() (Change, error) { return l.reload(path) })
}

// watchFile starts a Watcher that calls reload after changes to path.
func watchFile(path string, opts WatchOptions, reload func() (Change, error)) (*Watcher, error) {
	if path == "" {
		return nil, errors.New("allowlist: watch: empty path")
	}
	if opts.Debounce < 0 {
		return nil, fmt.Errorf("allowlist: watch %s: negative debounce %v", path, opts.Debounce)
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("allowlist: watch %s: %w", path, err)
	}
	if err := fsw.Add(filepath.Dir(path)); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("allowlist: watch %s: %w", path, err)
	}
	w := &Watcher{
		fsw:  fsw,
		stop: make(chan struct{}),
		done: make(chan struct{}),
		link: watched{dir: absDir(path), name: filepath.Base(path)},
	}
	if err := w.retarget(path); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("allowlist: watch %s: %w", path, err)
	}
	go w.run(path, opts, reload)
	return w, nil
}

// watched is a file the watcher reloads for: its directory, absolute, and
// its name.
type watched struct{ dir, name string }

func (f watched) is(dir, name string) bool { return f.dir != "" && f.dir == dir && f.name == name }

// absDir is the absolute directory of path (path's own directory when it
// cannot be made absolute).
func absDir(path string) string {
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return filepath.Clean(dir)
}

// retarget resolves path again and, when it is a symbolic link to a file in
// another directory than the link's, watches that directory instead of the
// previous target's. A link that does not resolve has no target: the
// reload reports it.
func (w *Watcher) retarget(path string) error {
	var next watched
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := filepath.EvalSymlinks(path); err == nil {
			next = watched{dir: absDir(t), name: filepath.Base(t)}
		}
	}
	if next.dir == w.target.dir {
		w.target = next
		return nil
	}
	if w.target.dir != "" && w.target.dir != w.link.dir {
		_ = w.fsw.Remove(w.target.dir) // gone with its directory, maybe
	}
	w.target = next
	if next.dir != "" && next.dir != w.link.dir {
		if err := w.fsw.Add(next.dir); err != nil {
			w.target = watched{}
			return err
		}
	}
	return nil
}

func (w *Watcher) run(path string, opts WatchOptions, reload func() (Change, error)) {
	defer close(w.done)
	// One timer, re-armed by every event: the reload runs once the file
	// has been quiet for the debounce period.
	timer := time.NewTimer(opts.Debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-w.stop:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			evPath := filepath.Clean(ev.Name)
			if abs, err := filepath.Abs(evPath); err == nil {
				evPath = abs
			}
			if (evPath == w.link.dir || evPath == w.target.dir) && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				// The kernel drops the watch with the directory; without
				// this report the list would silently stop following
				// the file.
				if opts.OnError != nil {
					opts.OnError(fmt.Errorf("allowlist: watch %s: directory %s was removed or renamed; changes are no longer seen", path, evPath))
				}
				continue
			}
			// Chmod alone does not change the content. Rename and Remove
			// of the file do count: if nothing replaces it, the reload
			// reports the file missing, so the operator learns of it.
			dir, name := filepath.Split(evPath)
			dir = filepath.Clean(dir)
			if !w.link.is(dir, name) && !w.target.is(dir, name) || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) == 0 {
				continue
			}
			timer.Reset(opts.Debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflow means events were lost; reloading is the safe
			// answer as well as reporting it.
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(opts.Debounce)
			}
			if opts.OnError != nil {
				opts.OnError(fmt.Errorf("allowlist: watch %s: %w", path, err))
			}
		case <-timer.C:
			// The link may point elsewhere now (a checkout switched).
			if err := w.retarget(path); err != nil && opts.OnError != nil {
				opts.OnError(fmt.Errorf("allowlist: watch %s: %w", path, err))
			}
			c, err := reload()
			switch {
			case err != nil:
				if opts.OnError != nil {
					opts.OnError(err)
				}
			case opts.OnReload != nil:
				opts.OnReload(c)
			}
		}
	}
}

// Close stops watching. It returns once the watcher's goroutine has exited,
// so no callback runs after it. Calling Close again returns the first
// call's result.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.stop)
		<-w.done
		w.closeErr = w.fsw.Close()
	})
	return w.closeErr
}

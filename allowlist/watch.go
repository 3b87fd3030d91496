package allowlist

import (
	"errors"
	"fmt"
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
	}
	go w.run(path, opts, reload)
	return w, nil
}

func (w *Watcher) run(path string, opts WatchOptions, reload func() (Change, error)) {
	defer close(w.done)
	dir, name := filepath.Dir(path), filepath.Base(path)
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
			if filepath.Clean(ev.Name) == dir && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				// The kernel drops the watch with the directory; without
				// this report the list would silently stop following
				// the file.
				if opts.OnError != nil {
					opts.OnError(fmt.Errorf("allowlist: watch %s: directory %s was removed or renamed; changes are no longer seen", path, dir))
				}
				continue
			}
			// Chmod alone does not change the content. Rename and Remove
			// of the file do count: if nothing replaces it, the reload
			// reports the file missing, so the operator learns of it.
			if filepath.Base(ev.Name) != name || ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) == 0 {
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

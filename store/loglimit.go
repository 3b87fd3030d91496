package store

import (
	"strings"
	"sync"
	"time"
	"unicode"

	"go.uber.org/zap"
)

// Rate-limiting pebble's error lines. Pebble retries a failed flush or
// compaction at once, without backoff, and reports every failure: on a full
// disk that was thousands of lines a second, each with a stack trace. So
// each kind of error (its text with the numbers taken out: they name a new
// file at every attempt) is logged at most once per logInterval; the next
// line of its kind after that says how many were held back, and so does the
// store's Close for those held back since.

// logInterval is how often one kind of pebble error is logged at most.
const logInterval = 30 * time.Second

// maxLogKinds bounds the kinds the limiter tracks; past it, kinds with
// nothing held back are forgotten, and new ones share one entry.
const maxLogKinds = 64

// logLimiter logs pebble's error lines to log, rate-limited. Its methods are
// safe for concurrent use.
type logLimiter struct {
	log   *zap.Logger
	now   func() time.Time // time.Now; tests move it
	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	last time.Time // when a line of this kind was last logged
	held int       // lines held back since
	text string    // the last one held back
}

func newLogLimiter(log *zap.Logger) *logLimiter {
	return &logLimiter{log: log, now: time.Now, kinds: make(map[string]*logKind)}
}

// error logs msg at error level, with err as a one-line field (no stack
// trace), unless a line of its kind went out less than logInterval ago.
func (l *logLimiter) error(msg string, err error, fields ...zap.Field) {
	text := msg
	if err != nil {
		text += ": " + err.Error()
		fields = append(fields, zap.String("error", err.Error()))
	}
	ok, held := l.allow(text)
	if !ok {
		return
	}
	if held > 0 {
		fields = append(fields, zap.Int("repeated", held))
	}
	l.log.Error(msg, fields...)
}

// allow reports whether a line of text may be logged now, and how many of
// its kind were held back since the last one that was.
func (l *logLimiter) allow(text string) (ok bool, held int) {
	key := logKey(text)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[key]
	if k == nil && len(l.kinds) >= maxLogKinds {
		for key, k := range l.kinds {
			if k.held == 0 {
				delete(l.kinds, key)
			}
		}
		if len(l.kinds) >= maxLogKinds {
			key = "" // one entry for the rest
			k = l.kinds[key]
		}
	}
	if k == nil {
		l.kinds[key] = &logKind{last: now}
		return true, 0
	}
	if now.Sub(k.last) < logInterval {
		k.held++
		k.text = text
		return false, 0
	}
	held = k.held
	k.last, k.held, k.text = now, 0, ""
	return true, held
}

// flush logs, for each kind with lines held back, how many and the last
// one.
func (l *logLimiter) flush() {
	l.mu.Lock()
	var held []logKind
	for _, k := range l.kinds {
		if k.held > 0 {
			held = append(held, *k)
			k.held, k.text = 0, ""
		}
	}
	l.mu.Unlock()
	for _, k := range held {
		l.log.Error("pebble error repeated", zap.Int("repeated", k.held), zap.String("last", k.text))
	}
}

// logKey is the kind of a line: its text with every run of digits replaced
// by one '#', so that the same failure on another file (a new sstable
// number at every attempt) is the same kind.
func logKey(text string) string {
	var b strings.Builder
	digits := false
	for _, r := range text {
		d := unicode.IsDigit(r)
		if d && !digits {
			b.WriteByte('#')
		} else if !d {
			b.WriteRune(r)
		}
		digits = d
	}
	return b.String()
}

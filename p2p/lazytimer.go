package p2p

import (
	"sync/atomic"
	"time"
)

// lazyTimer is a stream's time.AfterFunc timer, made on its first reset. A
// stream has six timers (the ack deadline, the ack delay, the idle look,
// the spiller, the nowait watchdog and the frame watch) and most streams
// never arm some of them: made up front they cost about 110 bytes each at
// each end of every open stream, kept for the stream's life.
//
// The pointer is atomic because end stops every timer without the locks
// that serialise their resets. Resets of one timer must not run
// concurrently (each timer's resets are under the lock, or behind the
// happens-before, that its doc in msgStream names), or two first resets
// could make two timers; a stop may run beside a reset. A reset after a
// stop arms the timer again, as time.Timer.Reset does: callbacks look at
// whether the stream has ended.
type lazyTimer struct {
	t atomic.Pointer[time.Timer]
}

// reset arms the timer to call f(st) after d, making it if it was never
// armed. f must be the same on every call. It is a method expression, not
// a method value (st.f), which would cost an allocation on every call.
func (l *lazyTimer) reset(d time.Duration, st *msgStream, f func(*msgStream)) {
	t := l.t.Load()
	if t == nil {
		// Stored before it is armed: f may reset the timer, and must find
		// this one rather than make a second.
		t = time.AfterFunc(time.Hour, func() { f(st) })
		t.Stop()
		l.t.Store(t)
	}
	t.Reset(d)
}

// stop disarms the timer, if it was ever armed.
func (l *lazyTimer) stop() {
	if t := l.t.Load(); t != nil {
		t.Stop()
	}
}

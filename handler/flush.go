package handler

// How the messages of API calls share writes: a call's message waits in
// its stream's buffer when other calls are likely to follow, and the last
// of them, or the loop, flushes them together.

import "runtime"

// maxDeferred bounds the messages that API calls leave buffered for the
// calls that follow them, when calls keep coming.
const maxDeferred = 16

// endCall ends an API call's apply: its messages are flushed now, with those
// the calls before it left buffered, unless another call is waiting for mu
// and will flush them with its own. Each call that leaves them counts the
// next one in, before mu is released, so the last call of a run always
// finds none waiting and flushes. The caller holds mu.
//
// A call is likely to be followed by others when it sent a request to a
// peer with which other exchanges of ours are out, or while requests this
// handler delivered wait for their answers: the application is making
// many exchanges at once, and its goroutines that hold their replies or
// requests will call in a moment, each on its own. Then the loop flushes,
// once the goroutines ready to run have run (flushLater), so that their
// messages share a write.
func (h *Handler) endCall() {
	h.inCall = false
	if h.calls.Add(-1) > 0 && h.deferred < maxDeferred {
		return
	}
	alongside := h.alongside
	h.alongside = false
	if h.deferred > 0 && h.deferred < maxDeferred && (alongside || h.pending.unclaimed.Load() > 0) {
		select {
		case h.flushBell <- struct{}{}:
		default:
		}
		return
	}
	h.flushDeferred()
}

// flushDeferred flushes what API calls left buffered. The caller holds mu.
func (h *Handler) flushDeferred() {
	if h.deferred > 0 {
		h.deferred = 0
		h.node.Flush()
	}
}

// flushLater is the loop's part of endCall's deferral: it lets the
// goroutines ready to run go first (runtime.Gosched puts the loop behind
// them), which are, with many exchanges under way, the application's next
// calls, then flushes what they all left. It never waits for more than
// that: a request the application keeps does not hold the replies to
// others.
func (h *Handler) flushLater() {
	runtime.Gosched()
	h.mu.Lock()
	h.flushDeferred()
}

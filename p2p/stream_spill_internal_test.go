package p2p

import (
	"bytes"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"
)

// stuckStream is a stream whose peer reads nothing until open is called:
// a write waits, as on a full flow-control window, until the stream's write
// deadline passes or the peer reads again.
type stuckStream struct {
	network.Stream // nil: only the methods below are called

	mu       sync.Mutex
	deadline time.Time
	opened   bool
	got      bytes.Buffer
	changed  chan struct{} // closed and replaced on every change above
}

func newStuckStream() *stuckStream { return &stuckStream{changed: make(chan struct{})} }

// changeLocked wakes whoever waits on the state. The caller holds mu.
func (s *stuckStream) changeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *stuckStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	s.changeLocked()
	return nil
}

func (s *stuckStream) Write(b []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.opened {
			defer s.mu.Unlock()
			s.got.Write(b)
			s.changeLocked()
			return len(b), nil
		}
		d, changed := s.deadline, s.changed
		s.mu.Unlock()
		var expired <-chan time.Time
		if !d.IsZero() {
			if time.Until(d) <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timer := time.NewTimer(time.Until(d))
			defer timer.Stop()
			expired = timer.C
		}
		select {
		case <-changed:
		case <-expired:
		}
	}
}

// open has the peer read again, everything written and still to come.
func (s *stuckStream) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = true
	s.changeLocked()
}

// awaitBytes waits until n bytes have been written, or fails the test.
func (s *stuckStream) awaitBytes(t *testing.T, n int) []byte {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		got, changed := bytes.Clone(s.got.Bytes()), s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d of %d bytes reached the peer", len(got), n)
		}
	}
}

// flushNoWait writes payload to st and flushes it as a writer that may not
// wait does, and fails unless the flush returns well before st's
// WriteTimeout (a minute): without the watchdog it waits for that.
func flushNoWait(t *testing.T, st *msgStream, payload []byte) {
	t.Helper()
	st.wmu.Lock()
	st.nowait = true
	if _, err := st.writer().Write(payload); err != nil {
		t.Fatal(err)
	}
	st.flushReq.Store(true)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		st.unlockNoWait()
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("a write that may not wait was held by a peer that does not read")
	}
}

// A writer that may not wait (the node loop, trySend) gives a stream whose
// peer does not read directWriteWait, not WriteTimeout: the watchdog wakes
// its write, and what the stream did not take is spilled. The spiller then
// writes the spill, waiting as long as a writer may, once the peer reads
// again. Each of the two is a stream timer made on first use (lazyTimer):
// this fails if either is never made.
func TestNoWaitWriteSpillsAndSpillerWritesIt(t *testing.T) {
	s := newStuckStream()
	st := &msgStream{n: &Node{}, s: s}
	st.n.cfg.WriteTimeout = time.Minute
	st.ww = wireWriter{st, s}
	payload := bytes.Repeat([]byte{7}, 1000)

	flushNoWait(t, st, payload)
	// (The spiller may hold the write lock by now, waiting on the peer.)
	s.mu.Lock()
	early := s.got.Len()
	s.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d bytes reached a peer that reads nothing", early)
	}

	s.open()
	if got := s.awaitBytes(t, len(payload)); !bytes.Equal(got, payload) {
		t.Fatalf("the peer read %d bytes, not the %d written", len(got), len(payload))
	}
	// The spiller's goroutine lets go of the write lock as it ends.
	st.wmu.Lock()
	st.wmu.Unlock()
}

// answerless is a stuckStream whose peer never answers our proposal: the
// read of the answer, which go-multistream begins with the first write,
// ends at once.
type answerless struct{ *stuckStream }

func (answerless) Read([]byte) (int, error) { return 0, io.EOF }

// The first write to a stream this node opened carries our proposal of the
// protocol through go-multistream, which loses the whole write, and reports
// it written, when the watchdog cuts it short: the peer never got the
// stream, and the messages on ours waited out their ack timeout
// (TestDefaultsNeverCutOffHonestPeers failed so on a loaded machine). A
// writer that may not wait spills that write whole instead, for the
// spiller, which writes it, proposal first, once the peer reads again.
func TestNoWaitWriteLeavesTheProposalToTheSpiller(t *testing.T) {
	s := newStuckStream()
	ps := &proposedStream{Stream: answerless{s}, rw: msmux.NewMSSelect(answerless{s}, protocol.ID(ProtocolID)),
		written: make(chan struct{})}
	st := &msgStream{n: &Node{}, s: ps}
	st.n.cfg.WriteTimeout = time.Minute
	st.ww = wireWriter{st, ps}
	payload := bytes.Repeat([]byte{7}, 1000)

	flushNoWait(t, st, payload)

	s.open()
	var want []byte
	for _, p := range []string{msmux.ProtocolID, ProtocolID} {
		want = append(append(append(want, byte(len(p)+1)), p...), '\n')
	}
	want = append(want, payload...)
	if got := s.awaitBytes(t, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("the peer read %q, not the proposal and the %d bytes written", got, len(payload))
	}
	// The spiller's goroutine lets go of the write lock as it ends.
	st.wmu.Lock()
	st.wmu.Unlock()
}

package p2p

import (
	"bytes"
	"testing"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// Only a delivered message whose sender asked for it gets a held ack.
func TestHoldsAck(t *testing.T) {
	lazy, eager := &frame{kind: frameKindData, lazy: true}, &frame{kind: frameKindData}
	for _, c := range []struct {
		d     *frame
		r     pb.Reason
		delay time.Duration
		want  bool
	}{
		{lazy, pb.Reason_OK, time.Millisecond, true},
		{eager, pb.Reason_OK, time.Millisecond, false},
		{lazy, pb.Reason_OK, -1, false},
		{lazy, pb.Reason_BUSY, time.Millisecond, false},
		{lazy, pb.Reason_NOT_ROUTED, time.Millisecond, false},
		{lazy, pb.Reason_TOO_LARGE, time.Millisecond, false},
		{lazy, pb.Reason_NOT_ALLOWLISTED, time.Millisecond, false},
	} {
		if got := holdsAck(c.d, c.r, c.delay); got != c.want {
			t.Errorf("holdsAck(lazy=%v, %v, %v) = %v", c.d.lazy, c.r, c.delay, got)
		}
	}
}

// minimalConfig is a Config with only what is required set: a key and an
// (empty) allowlist.
func minimalConfig(t *testing.T) Config {
	t.Helper()
	key, err := GenerateKey(Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	list, err := allowlist.New()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Key: key, Allowlist: list}
}

func TestAckDelayBounds(t *testing.T) {
	base := minimalConfig(t)
	c, err := base.withDefaults()
	if err != nil || c.AckDelay != DefaultAckDelay {
		t.Fatalf("default: %v, %v", c.AckDelay, err)
	}
	base.AckDelay = -1
	if c, err := base.withDefaults(); err != nil || c.AckDelay != -1 {
		t.Fatalf("disabled: %v, %v", c.AckDelay, err)
	}
	base.AckDelay = MaxAckDelay + 1
	if _, err := base.withDefaults(); err == nil {
		t.Fatal("an ack delay over the maximum was accepted")
	}
}

func TestStreamIdleTimeoutBounds(t *testing.T) {
	base := minimalConfig(t)
	for _, c := range []struct {
		set, want time.Duration
		ok        bool
	}{
		{0, DefaultStreamIdleTimeout, true},
		{-1, -1, true},
		{MinStreamIdleTimeout, MinStreamIdleTimeout, true},
		{time.Millisecond, 0, false},
	} {
		cfg := base
		cfg.StreamIdleTimeout = c.set
		got, err := cfg.withDefaults()
		switch {
		case c.ok && (err != nil || got.StreamIdleTimeout != c.want):
			t.Errorf("StreamIdleTimeout %s: %s, %v; want %s", c.set, got.StreamIdleTimeout, err, c.want)
		case !c.ok && err == nil:
			t.Errorf("StreamIdleTimeout %s was accepted, under the minimum", c.set)
		}
	}
}

// Acks count as answered (for the in-flight limit on receipt) as their
// bytes are handed to the stream, and not before: a lazy ack held in the
// buffer still counts as unanswered.
func TestAcksCountAnsweredAsTheyLeave(t *testing.T) {
	var wire bytes.Buffer
	st := &msgStream{n: &Node{}}
	st.n.bufs.size = 64 // small, so that the acks below overflow it
	st.ww = wireWriter{st, &wire}
	st.queueAck(ackRec{id: 1}, true)
	st.queueAck(ackRec{id: 2}, true)
	st.writeAcksLocked()
	if n := st.answered.Load(); n != 0 || wire.Len() != 0 {
		t.Fatalf("%d acks answered, %d bytes written, while they are held", n, wire.Len())
	}
	st.bw.Flush()
	if n := st.answered.Load(); n != 2 {
		t.Fatalf("%d acks answered once flushed, want 2", n)
	}
	// Acks that overflow the buffer are counted before the bytes leave.
	for i := range 30 {
		st.queueAck(ackRec{id: uint64(3 + i)}, true)
	}
	before := wire.Len()
	st.writeAcksLocked()
	if wire.Len() == before {
		t.Fatal("the buffer never spilled")
	}
	// Each of these acks is 5 bytes (prefix, tag, length, id tag, id):
	// every one with a byte on the wire is counted.
	const ackSize = 5
	if n := st.answered.Load(); n*ackSize < int64(wire.Len()) {
		t.Fatalf("%d acks answered with %d bytes on the wire", n, wire.Len())
	}
}

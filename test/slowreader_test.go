package test

import (
	"bufio"
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protodelim"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// A listed peer that acks the victim's messages without reading them (their
// wire ids are 1, 2, 3... on its stream, easy to guess) keeps the victim's
// bytes awaiting acks under the direct-write budget while the stream's
// flow-control window runs out. Send writes such a message from the
// caller's goroutine (the handler's loop, under its lock): that write must
// not wait for the window, or the peer holds the caller, and with it every
// other peer's exchanges, for WriteTimeout at a time, at no cost to itself.
// Send must return at once, and the victim must go on serving the honest
// peer.
func TestPeerThatDoesNotReadCannotBlockSend(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newScene(t, func(c *p2p.Config) { c.WriteTimeout = time.Minute; c.Metrics = reg })
	a := s.attacker()
	s.allow(a.id)
	h := a.mustConnect(attackerIP)
	st, err := a.stream(h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	write := func(f *pb.Frame) {
		t.Helper()
		var buf bytes.Buffer
		if _, err := protodelim.MarshalTo(&buf, f); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	// One message of the attacker's, so that the victim serves the stream
	// and writes its own messages there.
	write(pb.DataFrame(&pb.Data{Id: 1, Payload: []byte("hello")}))
	waitFor(t, s.rec, "the attacker's message", func(d p2p.Data) bool { return d.From == a.id.ID })

	// The first message is read and acked honestly: the victim's sender
	// for the peer exists from then on, and Send takes the direct way.
	sent := 0
	send := func(id uint64, size int) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
			defer cancel()
			done <- s.victim.Send(ctx, p2p.SendMsg{Peer: a.id.ID, ID: id, Data: bytes.Repeat([]byte{'x'}, size)})
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Send of message %d is held by a peer that does not read (%d bytes sent to it so far)", id, sent)
		}
	}
	send(100, 10)
	br := bufio.NewReader(st)
	st.SetReadDeadline(time.Now().Add(tu.Timeout))
	for {
		var f pb.Frame
		if err := protodelim.UnmarshalFrom(br, &f); err != nil {
			t.Fatal(err)
		}
		if d := f.GetData(); d != nil {
			write(pb.AckFrame(&pb.Ack{Id: d.Id}))
			break
		}
	}
	waitFor(t, s.rec, "status of message 100", func(st p2p.Status) bool { return st.MsgID == 100 && st.OK })

	// From here the attacker reads nothing: 60 KB messages, each acked
	// blind once Send has returned. The stream's window (256 KiB) is gone
	// after four; the fifth must not wait for it.
	const size = 60_000
	for i := range 5 {
		id := uint64(101 + i)
		send(id, size)
		sent += size
		if i == 4 {
			break
		}
		// Send may have queued it (a direct write the stream did not take
		// at once leaves the next ones to the peer's sender): the blind ack
		// must not come before the message is on the stream.
		registered(t, reg, 10+sent)
		write(pb.AckFrame(&pb.Ack{Id: uint64(2 + i)}))
		waitFor(t, s.rec, "status of a message acked blind", func(st p2p.Status) bool { return st.MsgID == id && st.OK })
	}

	// The victim still reaches the honest peer meanwhile.
	if st := s.victimSends(s.honestID.ID, s.honest.Addrs()[0], 200); !st.OK {
		t.Fatalf("victim to honest peer: %+v", st)
	}
}

// registered waits until the victim has put want payload bytes on its
// streams (bitvmx_p2p_payload_bytes_sent_total counts a message as it is
// written, once its ack is expected). No event tells a raw peer that, so
// it is polled, within tu.Timeout.
func registered(t *testing.T, reg *prometheus.Registry, want int) {
	t.Helper()
	deadline := time.Now().Add(tu.Timeout)
	for {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if strings.HasSuffix(f.GetName(), "payload_bytes_sent_total") && f.GetMetric()[0].GetCounter().GetValue() >= float64(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the victim did not write %d payload bytes", want)
		}
		runtime.Gosched()
	}
}

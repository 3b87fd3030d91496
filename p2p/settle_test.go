package p2p_test

import (
	"bufio"
	"errors"
	"sync"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// §4.4: an ack whose verdict is known does not wait for the verdicts of
// the frames behind it. The settler wrote the acks it owed only when no
// frame waited in it, so with a durable inbox and a peer that pipelines,
// the ack of message 1 waited for message 2's disk write. Here 1's
// verdict comes once 3 is judged (so 2 is surely staged behind it), and
// 2's is held until 1's ack has arrived.
func TestAckNotHeldBehindLaterVerdict(t *testing.T) {
	for _, ready := range []bool{false, true} {
		t.Run(map[bool]string{false: "Accept", true: "AcceptReady"}[ready], func(t *testing.T) {
			judged3 := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			unhold := func() { once.Do(func() { close(release) }) }
			accept := func(d p2p.Data) (p2p.Reason, <-chan struct{}, func() p2p.Reason) {
				switch string(d.Bytes) {
				case "1":
					return "", judged3, func() p2p.Reason { <-judged3; return p2p.ReasonOK }
				case "2":
					return "", release, func() p2p.Reason { <-release; return p2p.ReasonOK }
				}
				close(judged3)
				return p2p.ReasonOK, nil, nil
			}
			ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
			b := tu.Node(t, ib, tu.Allowlist(t, ia, ib), func(c *p2p.Config) {
				if ready {
					c.AcceptReady = accept
					return
				}
				c.Accept = func(d p2p.Data) (p2p.Reason, func() p2p.Reason) {
					r, _, wait := accept(d)
					return r, wait
				}
			})
			t.Cleanup(unhold) // before the node's Close, which waits for its streams
			s := rawStream(t, ia, b, "127.0.0.1")
			br := bufio.NewReader(s)

			var burst []byte
			for id := uint64(1); id <= 3; id++ {
				burst = append(burst, delimited(data(&pb.Data{Id: id, Payload: []byte{byte('0' + id)}}))...)
			}
			if _, err := s.Write(burst); err != nil {
				t.Fatal(err)
			}
			ack, ok := readAckWithin(t, s, br, ackWait)
			if !ok {
				t.Fatal("no ack of 1 while 2's verdict is held")
			}
			if ack.Id != 1 || ack.Reason != pb.Reason_OK {
				t.Fatalf("ack %v, want 1 OK", ack)
			}
			unhold()
			for id := uint64(2); id <= 3; id++ {
				if ack := readAck(t, br); ack.Id != id || ack.Reason != pb.Reason_OK {
					t.Fatalf("ack %v, want %d OK", ack, id)
				}
			}
			for want := byte('1'); want <= '3'; want++ {
				if d := tu.Next[p2p.Data](t, b.Receiver()); len(d.Bytes) != 1 || d.Bytes[0] != want {
					t.Fatalf("delivered %q, want %q", d.Bytes, want)
				}
			}
		})
	}
}

// A Config sets Accept or AcceptReady, not both: which would judge?
func TestAcceptAndAcceptReadyRefused(t *testing.T) {
	ia := tu.NewIdentity(t)
	_, err := p2p.New(p2p.Config{Key: ia.Key, Allowlist: tu.Allowlist(t, ia),
		Accept:      func(p2p.Data) (p2p.Reason, func() p2p.Reason) { return p2p.ReasonOK, nil },
		AcceptReady: func(p2p.Data) (p2p.Reason, <-chan struct{}, func() p2p.Reason) { return p2p.ReasonOK, nil, nil },
	})
	if !errors.Is(err, p2p.ErrTwoAccepts) {
		t.Fatalf("New: %v, want ErrTwoAccepts", err)
	}
}

package p2p_test

import (
	"bytes"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// With Config.Deliveries, what Receiver would carry comes on Deliveries
// instead, in the same order: Data and Status in their own fields, every
// other event in Event; Receiver is nil.
func TestDeliveries(t *testing.T) {
	a, b := pair(t, func(c *p2p.Config) { c.Deliveries = true; c.MaxMessageSize = 100 })
	if a.Receiver() != nil || b.Receiver() != nil {
		t.Fatal("Receiver is not nil with Deliveries")
	}
	msg := []byte("hello operator")
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 7, Channel: 3, Data: msg}

	is := func(k p2p.DeliveryKind) func(p2p.Delivery) bool {
		return func(d p2p.Delivery) bool { return d.Kind == k }
	}
	// Connected comes first, as on Receiver: the connection exists before
	// its first stream.
	c := tu.NextMatch(t, b.Deliveries(), is(p2p.DeliveredEvent))
	if ev, ok := c.Event.(p2p.Connected); !ok || ev.Peer != a.ID() || !ev.Inbound {
		t.Fatalf("first delivery %+v, want Connected", c)
	}
	d := tu.NextMatch(t, b.Deliveries(), is(p2p.DeliveredData))
	if d.Data.From != a.ID() || !bytes.Equal(d.Data.Bytes, msg) || d.Data.Channel != 3 || d.Event != nil {
		t.Fatalf("got %+v", d)
	}
	if ev, ok := d.AsEvent().(p2p.Data); !ok || !bytes.Equal(ev.Bytes, msg) {
		t.Fatalf("AsEvent of Data gave %#v", d.AsEvent())
	}
	st := tu.NextMatch(t, a.Deliveries(), is(p2p.DeliveredStatus))
	if !st.Status.OK || st.Status.MsgID != 7 || st.Status.Peer != b.ID() {
		t.Fatalf("status %+v", st)
	}
	if ev, ok := st.AsEvent().(p2p.Status); !ok || ev.MsgID != 7 {
		t.Fatalf("AsEvent of Status gave %#v", st.AsEvent())
	}

	// A Status the node decides itself takes the same way.
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), ID: 8, Data: make([]byte, 101)}
	st = tu.NextMatch(t, a.Deliveries(), is(p2p.DeliveredStatus))
	if st.Status.OK || st.Status.MsgID != 8 || st.Status.Reason != p2p.ReasonTooLarge {
		t.Fatalf("status %+v", st)
	}

	// Close closes Deliveries.
	a.Close()
	for range a.Deliveries() {
	}
}

// Without Config.Deliveries nothing changes for Receiver's users, and
// Deliveries is nil.
func TestNoDeliveriesByDefault(t *testing.T) {
	a, _ := pair(t)
	if a.Deliveries() != nil || a.Receiver() == nil {
		t.Fatal("Deliveries set, or Receiver nil, on a default node")
	}
}

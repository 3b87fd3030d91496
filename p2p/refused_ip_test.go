package p2p_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A peer whose allowlist binds every key to IPs refuses a connection from
// any other IP before the handshake (its gater's InterceptAccept): the
// sender's Status matches ErrClosedAtHandshake, like a refusal after the
// handshake, and says the IP may be why. (It was a bare "failed to
// negotiate security protocol: EOF", or "connection reset by peer".)
func TestRefusedByIPBeforeHandshake(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	bound, err := allowlist.New(
		allowlist.Entry{ID: ia.ID, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}},
		allowlist.Entry{ID: ib.ID, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if err != nil {
		t.Fatal(err)
	}
	b := tu.Node(t, ib, bound, tu.Listen("127.0.0.2"))
	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib)) // dials from 127.0.0.1
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: b.Addrs()[0], ID: 1, Data: []byte("x")}
	st := tu.Next[p2p.Status](t, a.Receiver())
	if st.Reason != p2p.ReasonDialFailed || !errors.Is(st.Err, p2p.ErrClosedAtHandshake) || !strings.Contains(st.Err.Error(), "IP") {
		t.Fatalf("status %+v: %v", st, st.Err)
	}
	t.Log(st.Err)
}

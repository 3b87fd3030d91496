package handler_test

import (
	"strings"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// Request and Send refuse at once an address the node cannot dial (another
// transport than TCP, a relay circuit aside), or one that names another
// peer, rather than dial it MaxAttempts times to fail dial_failed.
func TestRequestRefusesUndialableAddress(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	a := newHandler(t, ia, tu.Allowlist(t, ia, ib))
	for _, s := range []string{
		"/ip4/127.0.0.1/udp/4001/quic-v1",
		"/ip4/127.0.0.1/tcp/4001/ws",
		"/unix/tmp/p2p.sock",
		"/ip4/127.0.0.1",
		"/ip4/127.0.0.1/tcp/4001/p2p/" + ia.ID.String(),
	} {
		if _, err := a.Request(ib.ID, ma.StringCast(s), []byte("x")); err == nil || !strings.Contains(err.Error(), "address") {
			t.Errorf("Request to %s: %v, want the address refused", s, err)
		}
		if _, err := a.Send(ib.ID, ma.StringCast(s), []byte("x")); err == nil {
			t.Errorf("Send to %s accepted", s)
		}
	}
	for _, s := range []string{
		"/ip4/127.0.0.1/tcp/1",
		"/ip4/127.0.0.1/tcp/1/p2p/" + ib.ID.String(),
		"/dns4/localhost/tcp/1",
		"/ip4/127.0.0.1/tcp/1/p2p/" + ia.ID.String() + "/p2p-circuit/p2p/" + ib.ID.String(),
	} {
		id, err := a.Request(ib.ID, ma.StringCast(s), []byte("x"))
		if err != nil {
			t.Errorf("Request to %s: %v", s, err)
			continue
		}
		if err := a.Cancel(id); err != nil {
			t.Errorf("cancel %s: %v", id, err)
		}
	}
}

package gossip_test

import (
	"context"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip"
	"github.com/bitvmx/go-bitvmx-p2p/ratelimit"
)

// TestMalformedMembershipFrames: docs/PROTOCOL.md §10. A Hello's hash is exactly
// 32 bytes, and a Frame carries a hello or a document: a Hello with a
// shorter hash, an empty Frame, or a frame the peer's end of the stream
// cuts short, is a malformed frame, charged malformed_message. Written
// byte by byte, as a foreign peer would.
func TestMalformedMembershipFrames(t *testing.T) {
	for name, frame := range map[string][]byte{
		// Frame{hello: {version: 1, hash: 31 bytes}}
		"31-byte hash": append([]byte{0x25, 0x0a, 0x23, 0x08, 0x01, 0x12, 0x1f}, make([]byte, 31)...),
		"empty frame":  {0x00},
		// 3 bytes of a 36-byte frame, then the end of the stream.
		"cut by the end of the stream": {0x24, 0x0a, 0x22},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := tu.NewIdentity(t), tu.NewIdentity(t)
			v1 := genesis(t, 1, a, b)
			ma := start(t, a, v1)
			h := tu.RawHost(t, b.Key, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
			defer cancel()
			if err := h.Connect(ctx, tu.AddrInfo(ma.node)); err != nil {
				t.Fatal(err)
			}
			st, err := h.NewStream(ctx, a.ID, gossip.ProtocolID)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Reset()
			if _, err := st.Write(frame); err != nil {
				t.Fatal(err)
			}
			// A whole frame is judged on its bytes: the node may read it,
			// refuse it and reset the stream before this close, which then
			// fails with the reset; what the node did is checked below. The
			// cut frame needs the close to be refused at all.
			_ = st.CloseWrite()
			if r := waitRejected(t, ma, b.ID); r.Reason != gossip.ReasonMalformed || !r.Charged {
				t.Fatalf("rejected %+v, want malformed and charged", r)
			}
			if c := nextCharge(t, ma); c.peer != b.ID || c.reason != ratelimit.MalformedMessage {
				t.Fatalf("charge %+v", c)
			}
			wantCurrent(t, ma, v1)
		})
	}
}

package p2p_test

import (
	"bytes"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A message larger than what is left of the stream's 16 KiB write buffer
// reaches the wire inside bufio's Write, not in flushLocked: it must be
// written under a live write deadline, not under the one the previous
// flush set, which has expired once the stream has been quiet for longer
// than WriteTimeout (well within StreamIdleTimeout). It used to fail at
// once with a write timeout: Status connection_lost, stream reset.
func TestLargeMessageAfterQuietStream(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ib)
	a := tu.Node(t, ia, list, func(c *p2p.Config) { c.WriteTimeout = writeTimeout })
	b := tu.Node(t, ib, list)

	a.Sender() <- p2p.SendMsg{Peer: ib.ID, Addr: b.Addrs()[0], ID: 1, Data: []byte("small")}
	if st := nextOf(t, a, statusOf(1)); !st.OK {
		t.Fatalf("first message: %+v", st)
	}
	tu.Next[p2p.Data](t, b.Receiver())

	// The trigger is time itself: the stream stays quiet past the write
	// deadline its last flush set (at most WriteTimeout ahead).
	<-time.After(3 * writeTimeout)

	big := bytes.Repeat([]byte{7}, 40<<10)
	a.Sender() <- p2p.SendMsg{Peer: ib.ID, ID: 2, Data: big}
	if st := nextOf(t, a, statusOf(2)); !st.OK {
		t.Fatalf("a 40 KiB message after %s of quiet: %+v (err %v)", 3*writeTimeout, st, st.Err)
	}
}

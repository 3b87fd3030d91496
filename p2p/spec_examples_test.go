package p2p_test

import (
	"bufio"
	"bytes"
	"io"
	"maps"
	"slices"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// TestProtocolExamples holds the byte-exact examples of docs/PROTOCOL.md
// §4.7 to the node's encoders, and sends the first example to a node to
// check that its answer is, byte for byte, the documented ack. The
// handler's examples (§6) are TestEnvelopeExamples'; every hex block of
// the page is checked by one of the two.
func TestProtocolExamples(t *testing.T) {
	doc := tu.DocHex(t, tu.ProtocolDoc)
	want := map[string][]byte{
		"data":            p2p.EncodeDataFrame(1, 0, 0, false, []byte("hello")),
		"ack-ok":          p2p.EncodeAckFrame(1, pb.Reason_OK),
		"data-all-fields": p2p.EncodeDataFrame(300, 2, 1, true, []byte("hi")),
		"ack-busy":        p2p.EncodeAckFrame(300, pb.Reason_BUSY),
		"ack-unreadable":  p2p.EncodeAckFrame(0, pb.Reason_MALFORMED),
	}
	handlers := []string{"envelope-request", "request", "ack-and-reply"}
	names := slices.Sorted(maps.Keys(doc))
	if all := slices.Sorted(slices.Values(append(slices.Collect(maps.Keys(want)), handlers...))); !slices.Equal(names, all) {
		t.Fatalf("the page's hex blocks are %q; the tests check %q", names, all)
	}
	for name, b := range want {
		if !bytes.Equal(doc[name], b) {
			t.Errorf("block %q is\n% x\nthe node writes\n% x", name, doc[name], b)
		}
	}

	// On the wire: the documented message, answered by the documented ack.
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	b := tu.Node(t, ib, tu.Allowlist(t, ia, ib))
	s := rawStream(t, ia, b, "127.0.0.1")
	if _, err := s.Write(doc["data"]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(doc["ack-ok"]))
	if _, err := io.ReadFull(bufio.NewReader(s), got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, doc["ack-ok"]) {
		t.Fatalf("the node answered % x, the page says % x", got, doc["ack-ok"])
	}
	if d := tu.Next[p2p.Data](t, b.Receiver()); string(d.Bytes) != "hello" {
		t.Fatalf("delivered %q", d.Bytes)
	}
}

package handler

import (
	"bytes"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// TestEnvelopeExampleEncoding holds the envelope of docs/PROTOCOL.md §6 to
// the handler's encoder, and the reply envelope inside the page's
// ack-and-reply block too (TestEnvelopeExamples checks the frames around
// them on the wire).
func TestEnvelopeExampleEncoding(t *testing.T) {
	doc := tu.DocHex(t, tu.ProtocolDoc)
	const x = 0x0123456789abcdef
	if got := appendEnvelope(nil, pb.Kind_KIND_REQUEST, x, []byte("ping")); !bytes.Equal(doc["envelope-request"], got) {
		t.Errorf("block envelope-request is\n% x\nthe handler writes\n% x", doc["envelope-request"], got)
	}
	reply := appendEnvelope(nil, pb.Kind_KIND_REPLY, x, []byte("pong"))
	if !bytes.HasSuffix(doc["ack-and-reply"], reply) {
		t.Errorf("block ack-and-reply is\n% x\nit does not end with the handler's reply envelope\n% x", doc["ack-and-reply"], reply)
	}
	if !bytes.Contains(doc["request"], doc["envelope-request"]) {
		t.Errorf("block request does not carry block envelope-request")
	}
}

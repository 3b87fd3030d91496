package handler

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
)

// The hand-written encoder writes exactly what protobuf writes.
func TestEnvelopeEncodingMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		m := &pb.Envelope{Kind: pb.Kind(rng.IntN(6) - 1)}
		if rng.IntN(4) > 0 {
			m.Exchange = rng.Uint64() >> rng.UintN(64)
		}
		if n := rng.IntN(300); n > 0 {
			m.Payload = bytes.Repeat([]byte{byte(i)}, n)
		}
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := appendEnvelope(nil, m.Kind, m.Exchange, m.Payload)
		if !bytes.Equal(got, want) || envelopeSize(m.Kind, m.Exchange, m.Payload) != len(want) {
			t.Fatalf("%v:\nours  %x\nproto %x", m, got, want)
		}
	}
}

// FuzzEnvelope decodes arbitrary bytes with the handler's decoder and with
// protobuf's: both must accept and refuse alike and read the same values.
func FuzzEnvelope(f *testing.F) {
	for _, m := range []*pb.Envelope{
		{Kind: pb.Kind_KIND_REQUEST, Exchange: 1<<64 - 1, Payload: []byte("ping")},
		{Kind: pb.Kind_KIND_REPLY, Exchange: 7},
		{},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x01})             // fields out of order
	f.Add([]byte{0x08, 0x01, 0x08, 0x02})                               // a field twice
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}) // a kind out of range
	f.Add([]byte{0x1a, 0x05, 0x01})                                     // payload cut short
	f.Add([]byte{0x20, 0x01})                                           // unknown field
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeEnvelope(b)
		var m pb.Envelope
		perr := proto.Unmarshal(b, &m)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ours: %v, protobuf: %v", err, perr)
		}
		if err == nil && (got.kind != m.Kind || got.exchange != m.Exchange || !bytes.Equal(got.payload, m.Payload)) {
			t.Fatalf("ours %+v, protobuf %v", got, &m)
		}
	})
}

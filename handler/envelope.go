package handler

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/handler/pb"
)

// Envelopes are encoded and decoded with protowire rather than
// proto.Marshal and proto.Unmarshal, as the p2p package does its frames
// (p2p/codec.go) and for the same reason: two of them per exchange, on the
// critical path. The bytes are what proto.Marshal writes
// (TestEnvelopeEncodingMatchesProto); the decoder takes the canonical
// encoding itself and gives anything else to proto.Unmarshal, so it reads
// every input as protobuf does (FuzzEnvelope).

const (
	fieldKind     protowire.Number = 1
	fieldExchange protowire.Number = 2
	fieldPayload  protowire.Number = 3
)

// envelope is a decoded pb.Envelope.
type envelope struct {
	kind     pb.Kind
	exchange uint64
	payload  []byte
}

// appendEnvelope appends the encoding of an envelope to b.
func appendEnvelope(b []byte, kind pb.Kind, exchange uint64, payload []byte) []byte {
	if kind != 0 {
		b = protowire.AppendTag(b, fieldKind, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(kind)))
	}
	if exchange != 0 {
		b = protowire.AppendTag(b, fieldExchange, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, exchange)
	}
	if len(payload) > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, payload)
	}
	return b
}

// envelopeSize is the length of appendEnvelope's output.
func envelopeSize(kind pb.Kind, exchange uint64, payload []byte) int {
	n := 0
	if kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(kind)))
	}
	if exchange != 0 {
		n += 1 + 8
	}
	if len(payload) > 0 {
		n += 1 + protowire.SizeBytes(len(payload))
	}
	return n
}

// decodeEnvelope reads an envelope. The payload aliases b, which the
// caller owns (the node hands every message over in a buffer of its own).
func decodeEnvelope(b []byte) (envelope, error) {
	if e, ok := decodeCanonical(b); ok {
		return e, nil
	}
	var m pb.Envelope
	if err := proto.Unmarshal(b, &m); err != nil {
		return envelope{}, err
	}
	return envelope{kind: m.Kind, exchange: m.Exchange, payload: m.Payload}, nil
}

// decodeCanonical reads b if its fields are known, each once and in order.
func decodeCanonical(b []byte) (envelope, bool) {
	var (
		e    envelope
		last protowire.Number
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num <= last {
			return envelope{}, false
		}
		last, b = num, b[n:]
		switch {
		case num == fieldKind && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return envelope{}, false
			}
			e.kind, b = pb.Kind(int32(v)), b[n:]
		case num == fieldExchange && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return envelope{}, false
			}
			e.exchange, b = v, b[n:]
		case num == fieldPayload && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return envelope{}, false
			}
			e.payload, b = v, b[n:]
		default:
			return envelope{}, false
		}
	}
	return e, true
}

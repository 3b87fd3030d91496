package p2p

import (
	"bufio"
	"bytes"
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

// Frames on the hot path are encoded and decoded with protowire, the
// protobuf module's own wire primitives, rather than proto.Marshal and
// proto.Unmarshal: for a small message the reflection and the oneof's
// allocations cost more than the rest of the node's work on it. The
// schema stays p2p/pb/message.proto and nothing else changes on the wire:
//
//   - the encoders write byte for byte what proto.Marshal writes
//     (TestEncodersMatchProto);
//   - the decoder reads the canonical encoding (one field per Frame, the
//     message's fields once each, in order) itself, and hands anything else
//     to proto.Unmarshal, so it accepts exactly what protobuf accepts and
//     reads it alike (FuzzReadFrame compares the two on every input), but
//     for one thing: a Frame with more than one body field (both data and
//     ack, or one of them twice), which protobuf reads as its last (or
//     merges) and the protocol refuses as malformed.

// Field numbers of message.proto. All are below 16: their tags take one
// byte.
const (
	fieldFrameData protowire.Number = 1
	fieldFrameAck  protowire.Number = 2
	fieldDataID    protowire.Number = 1
	fieldDataChan  protowire.Number = 2
	fieldDataBody  protowire.Number = 3
	fieldDataFrom  protowire.Number = 4
	fieldDataLazy  protowire.Number = 5
	fieldAckID     protowire.Number = 1
	fieldAckReason protowire.Number = 2
	frameKindNone                   = 0
	frameKindData                   = 1
	frameKindAck                    = 2
)

// frame is one decoded Frame: a Data (kind frameKindData) or an Ack
// (frameKindAck); kind frameKindNone is a Frame with neither.
type frame struct {
	kind        int
	id          uint64
	channel     uint32
	fromChannel uint32
	lazy        bool
	payload     []byte
	reason      pb.Reason
}

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// writeDataFrame writes the length-delimited Frame of one Data to bw. The
// payload is copied into bw once, never marshalled.
func writeDataFrame(bw *bufio.Writer, id uint64, channel, from uint32, lazy bool, payload []byte) error {
	body := sizeVarintField(id) + sizeVarintField(uint64(channel)) + sizeVarintField(uint64(from))
	if len(payload) > 0 {
		body += 1 + protowire.SizeBytes(len(payload))
	}
	if lazy {
		body += 2
	}
	b := bw.AvailableBuffer()
	b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(body)))
	b = protowire.AppendTag(b, fieldFrameData, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(body))
	b = appendVarintField(b, fieldDataID, id)
	b = appendVarintField(b, fieldDataChan, uint64(channel))
	if len(payload) > 0 {
		b = protowire.AppendTag(b, fieldDataBody, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(payload)))
		if _, err := bw.Write(b); err != nil {
			return err
		}
		if _, err := bw.Write(payload); err != nil {
			return err
		}
		b = bw.AvailableBuffer()
	}
	b = appendVarintField(b, fieldDataFrom, uint64(from))
	if lazy {
		b = appendVarintField(b, fieldDataLazy, 1)
	}
	_, err := bw.Write(b)
	return err
}

// writeAckFrame writes the length-delimited Frame of one Ack to bw.
func writeAckFrame(bw *bufio.Writer, id uint64, reason pb.Reason) error {
	// An enum is an int32, encoded as its sign extension.
	r := uint64(int64(reason))
	body := sizeVarintField(id) + sizeVarintField(r)
	b := bw.AvailableBuffer()
	b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(body)))
	b = protowire.AppendTag(b, fieldFrameAck, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(body))
	b = appendVarintField(b, fieldAckID, id)
	b = appendVarintField(b, fieldAckReason, r)
	_, err := bw.Write(b)
	return err
}

// decode reads one Frame's bytes (without its length prefix) into f. The
// payload is copied: b may be the reader's buffer.
func (f *frame) decode(b []byte) error {
	*f = frame{}
	if f.decodeCanonical(b) {
		return nil
	}
	*f = frame{}
	var m pb.Frame
	if err := proto.Unmarshal(b, &m); err != nil {
		return err
	}
	if bodyFields(b) > 1 {
		// Protobuf would keep the last (or merge repeated data), and
		// another implementation might read the frame otherwise: a Frame
		// carries one body, once (docs/PROTOCOL.md §4.3).
		return errManyBodies
	}
	switch body := m.Body.(type) {
	case *pb.Frame_Data:
		d := body.Data
		*f = frame{kind: frameKindData, id: d.Id, channel: d.Channel, fromChannel: d.FromChannel, lazy: d.LazyAck, payload: d.Payload}
	case *pb.Frame_Ack:
		*f = frame{kind: frameKindAck, id: body.Ack.Id, reason: body.Ack.Reason}
	}
	return nil
}

// errManyBodies is the decoding error of a Frame with both data and ack, or
// either of them more than once.
var errManyBodies = errors.New("a frame with more than one body field")

// bodyFields counts the body fields (data, ack) of the Frame encoded in b,
// which proto.Unmarshal has accepted. A field of either number with another
// wire type is an unknown field to protobuf, and not counted.
func bodyFields(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if (num == fieldFrameData || num == fieldFrameAck) && typ == protowire.BytesType {
			n++
		}
	}
	return n
}

// decodeCanonical reads b if it is a Frame of exactly one field, whose
// message has only known fields, each once and in order. It reports false
// for anything else, which protobuf may still accept.
func (f *frame) decodeCanonical(b []byte) bool {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType {
		return false
	}
	inner, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return false
	}
	switch num {
	case fieldFrameData:
		f.kind = frameKindData
	case fieldFrameAck:
		f.kind = frameKindAck
	default:
		return false
	}
	var last protowire.Number
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 || num <= last {
			return false
		}
		last, inner = num, inner[n:]
		if num == fieldDataBody && f.kind == frameKindData {
			if typ != protowire.BytesType {
				return false
			}
			v, n := protowire.ConsumeBytes(inner)
			if n < 0 {
				return false
			}
			f.payload, inner = bytes.Clone(v), inner[n:]
			continue
		}
		if typ != protowire.VarintType {
			return false
		}
		v, n := protowire.ConsumeVarint(inner)
		if n < 0 {
			return false
		}
		inner = inner[n:]
		switch {
		case f.kind == frameKindData && num == fieldDataID, f.kind == frameKindAck && num == fieldAckID:
			f.id = v
		case f.kind == frameKindData && num == fieldDataChan:
			f.channel = uint32(v)
		case f.kind == frameKindData && num == fieldDataFrom:
			f.fromChannel = uint32(v)
		case f.kind == frameKindData && num == fieldDataLazy:
			f.lazy = protowire.DecodeBool(v)
		case f.kind == frameKindAck && num == fieldAckReason:
			f.reason = pb.Reason(int32(v))
		default:
			return false
		}
	}
	return true
}

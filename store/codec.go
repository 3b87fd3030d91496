package store

import (
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Record values are one format byte followed by protobuf-wire fields. The
// wire format is used for its tags, not for generated code: a later version
// can add fields that this one skips, and a field this one writes can be
// dropped later without breaking old files. Zero values are not written.
const formatV1 = 1

// Field numbers. They are part of the on-disk layout: never reuse or renumber.
const (
	outID       protowire.Number = 1
	outPeer     protowire.Number = 2
	outKind     protowire.Number = 3
	outAddr     protowire.Number = 4
	outPayload  protowire.Number = 5
	outTag      protowire.Number = 6
	outAttempts protowire.Number = 7
	outCreated  protowire.Number = 8
	outEnded    protowire.Number = 9
	outReason   protowire.Number = 10
	outError    protowire.Number = 11
	outReply    protowire.Number = 12

	inPeer     protowire.Number = 1
	inID       protowire.Number = 2
	inKind     protowire.Number = 3
	inState    protowire.Number = 4
	inPayload  protowire.Number = 5
	inReply    protowire.Number = 6
	inReceived protowire.Number = 7
	inUpdated  protowire.Number = 8
	// Added after layout 1 was released, which ignores it: old code reads
	// such a record as a request ended unanswered, whose resend it
	// refuses, never delivers.
	inAnswered protowire.Number = 9

	deadOutgoing protowire.Number = 1 // the Outgoing's fields, nested without a format byte
	deadReason   protowire.Number = 2
	deadError    protowire.Number = 3
	deadFailed   protowire.Number = 4
)

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendTime writes t as unix nanoseconds. The zero time, which has no unix
// nanosecond value, is not written, so that it reads back as the zero time.
func appendTime(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(t.UnixNano()))
}

func appendOutgoingFields(b []byte, o *Outgoing) []byte {
	b = appendVarint(b, outID, o.ID)
	b = appendString(b, outPeer, o.Peer)
	b = appendVarint(b, outKind, uint64(o.Kind))
	b = appendString(b, outAddr, o.Addr)
	b = appendBytes(b, outPayload, o.Payload)
	b = appendString(b, outTag, o.Tag)
	b = appendVarint(b, outAttempts, uint64(o.Attempts))
	b = appendTime(b, outCreated, o.Created)
	b = appendTime(b, outEnded, o.Ended)
	b = appendString(b, outReason, o.Reason)
	b = appendString(b, outError, o.Error)
	return appendBytes(b, outReply, o.Reply)
}

func outgoingSize(o *Outgoing) int {
	return 96 + len(o.Peer) + len(o.Addr) + len(o.Payload) + len(o.Tag) + len(o.Reason) + len(o.Error) + len(o.Reply)
}

func encodeOutgoing(o *Outgoing) []byte {
	b := make([]byte, 1, 1+outgoingSize(o))
	b[0] = formatV1
	return appendOutgoingFields(b, o)
}

func encodeIncoming(in *Incoming) []byte {
	b := make([]byte, 1, 64+len(in.Peer)+len(in.Payload)+len(in.Reply))
	b[0] = formatV1
	b = appendString(b, inPeer, in.Peer)
	b = appendVarint(b, inID, in.ID)
	b = appendVarint(b, inKind, uint64(in.Kind))
	b = appendVarint(b, inState, uint64(in.State))
	b = appendBytes(b, inPayload, in.Payload)
	b = appendBytes(b, inReply, in.Reply)
	b = appendTime(b, inReceived, in.Received)
	b = appendTime(b, inUpdated, in.Updated)
	if in.Answered {
		b = appendVarint(b, inAnswered, 1)
	}
	return b
}

func encodeDeadLetter(d *DeadLetter) []byte {
	inner := appendOutgoingFields(make([]byte, 0, outgoingSize(&d.Outgoing)), &d.Outgoing)
	b := make([]byte, 1, 48+len(inner)+len(d.Reason)+len(d.Error))
	b[0] = formatV1
	b = appendBytes(b, deadOutgoing, inner)
	b = appendString(b, deadReason, d.Reason)
	b = appendString(b, deadError, d.Error)
	return appendTime(b, deadFailed, d.Failed)
}

// field is one decoded wire field: v for a varint, bs for a length-delimited
// value (aliasing the input; decoders copy what they keep, because pebble's
// values are only valid until its iterator moves on).
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	bs  []byte
}

var errWireType = errors.New("wrong wire type")

// walkFields calls f for each field of b. It rejects truncated input and the
// group wire types (obsolete, never written by any version) and anything
// protowire does not know; fixed-width fields are passed on so that unknown
// field numbers of those types can be skipped.
func walkFields(b []byte, f func(field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		fl := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			fl.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			fl.bs, n = protowire.ConsumeBytes(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			fl.v = uint64(v)
		case protowire.Fixed64Type:
			fl.v, n = protowire.ConsumeFixed64(b)
		default:
			return fmt.Errorf("field %d: unsupported wire type %d", num, typ)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(fl); err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
	}
	return nil
}

func (f field) varint() (uint64, error) {
	if f.typ != protowire.VarintType {
		return 0, errWireType
	}
	return f.v, nil
}

func (f field) small(limit uint64) (uint64, error) {
	v, err := f.varint()
	if err == nil && v > limit {
		err = fmt.Errorf("value %d out of range", v)
	}
	return v, err
}

func (f field) bytes() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, errWireType
	}
	// append to nil copies out of the caller's buffer, and keeps "absent"
	// and "empty" the same (nil), as the encoder writes neither.
	return append([]byte(nil), f.bs...), nil
}

func (f field) str() (string, error) {
	if f.typ != protowire.BytesType {
		return "", errWireType
	}
	return string(f.bs), nil
}

func (f field) time() (time.Time, error) {
	v, err := f.varint()
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(v)), nil
}

// body strips and checks the format byte.
func body(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty value")
	}
	if b[0] != formatV1 {
		return nil, fmt.Errorf("unknown record format %d", b[0])
	}
	return b[1:], nil
}

func decodeOutgoingFields(b []byte) (Outgoing, error) {
	var o Outgoing
	err := walkFields(b, func(f field) (err error) {
		var v uint64
		switch f.num {
		case outID:
			o.ID, err = f.varint()
		case outPeer:
			o.Peer, err = f.str()
		case outKind:
			v, err = f.small(math.MaxUint8)
			o.Kind = Kind(v)
		case outAddr:
			o.Addr, err = f.str()
		case outPayload:
			o.Payload, err = f.bytes()
		case outTag:
			o.Tag, err = f.str()
		case outAttempts:
			v, err = f.small(math.MaxInt32)
			o.Attempts = int(v)
		case outCreated:
			o.Created, err = f.time()
		case outEnded:
			o.Ended, err = f.time()
		case outReason:
			o.Reason, err = f.str()
		case outError:
			o.Error, err = f.str()
		case outReply:
			o.Reply, err = f.bytes()
		}
		return err
	})
	if err != nil {
		return Outgoing{}, err
	}
	if err := o.validate(); err != nil {
		return Outgoing{}, err
	}
	return o, nil
}

// decodeOutgoing decodes an outgoing record. Like the other decoders it never
// panics: any input either decodes to a valid record or returns an error.
func decodeOutgoing(b []byte) (Outgoing, error) {
	b, err := body(b)
	if err != nil {
		return Outgoing{}, err
	}
	return decodeOutgoingFields(b)
}

func decodeIncoming(b []byte) (Incoming, error) {
	b, err := body(b)
	if err != nil {
		return Incoming{}, err
	}
	var in Incoming
	err = walkFields(b, func(f field) (err error) {
		var v uint64
		switch f.num {
		case inPeer:
			in.Peer, err = f.str()
		case inID:
			in.ID, err = f.varint()
		case inKind:
			v, err = f.small(math.MaxUint8)
			in.Kind = Kind(v)
		case inState:
			v, err = f.small(math.MaxUint8)
			in.State = InState(v)
		case inPayload:
			in.Payload, err = f.bytes()
		case inReply:
			in.Reply, err = f.bytes()
		case inReceived:
			in.Received, err = f.time()
		case inUpdated:
			in.Updated, err = f.time()
		case inAnswered:
			v, err = f.small(1)
			in.Answered = v == 1
		}
		return err
	})
	if err != nil {
		return Incoming{}, err
	}
	if err := in.validate(); err != nil {
		return Incoming{}, err
	}
	return in, nil
}

func decodeDeadLetter(b []byte) (DeadLetter, error) {
	b, err := body(b)
	if err != nil {
		return DeadLetter{}, err
	}
	var d DeadLetter
	err = walkFields(b, func(f field) (err error) {
		switch f.num {
		case deadOutgoing:
			if f.typ != protowire.BytesType {
				return errWireType
			}
			d.Outgoing, err = decodeOutgoingFields(f.bs)
		case deadReason:
			d.Reason, err = f.str()
		case deadError:
			d.Error, err = f.str()
		case deadFailed:
			d.Failed, err = f.time()
		}
		return err
	})
	if err != nil {
		return DeadLetter{}, err
	}
	if err := d.validate(); err != nil {
		return DeadLetter{}, err
	}
	return d, nil
}

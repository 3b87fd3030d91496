package store

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// sampleRecords are records whose encodings seed the fuzzer and the codec
// tests: full ones, and ones with every optional field at its zero value.
func sampleRecords() ([]Outgoing, []Incoming, []DeadLetter) {
	outs := []Outgoing{
		outgoing(1),
		{ID: 1<<64 - 1, Peer: "p", Kind: KindMessage},
		{ID: 7, Peer: strings.Repeat("q", maxPeerLen), Kind: KindRequest, Attempts: 1 << 30,
			Created: time.Unix(0, -1), Payload: make([]byte, 300)},
	}
	answered := incoming("peer", 2)
	answered.Kind, answered.State, answered.Payload, answered.Reply = KindRequest, InAnswered, nil, []byte("r")
	ins := []Incoming{
		incoming("peer", 1),
		answered,
		{Peer: "x", Kind: KindMessage, State: InHandled},
		{Peer: "x", ID: 9, Kind: KindRequest, State: InHandled, Answered: true},
	}
	dls := []DeadLetter{
		deadLetter(3),
		{Outgoing: Outgoing{ID: 4, Peer: "p", Kind: KindMessage}},
	}
	return outs, ins, dls
}

func TestCodecRoundTrip(t *testing.T) {
	outs, ins, dls := sampleRecords()
	for _, o := range outs {
		got, err := decodeOutgoing(encodeOutgoing(&o))
		if err != nil || !reflect.DeepEqual(got, o) {
			t.Errorf("outgoing %+v: got %+v, %v", o, got, err)
		}
	}
	for _, in := range ins {
		got, err := decodeIncoming(encodeIncoming(&in))
		if err != nil || !reflect.DeepEqual(got, in) {
			t.Errorf("incoming %+v: got %+v, %v", in, got, err)
		}
	}
	for _, d := range dls {
		got, err := decodeDeadLetter(encodeDeadLetter(&d))
		if err != nil || !reflect.DeepEqual(got, d) {
			t.Errorf("dead letter %+v: got %+v, %v", d, got, err)
		}
	}
}

func TestCodecSkipsUnknownFields(t *testing.T) {
	// A later version may add fields of any supported wire type.
	o := outgoing(5)
	enc := encodeOutgoing(&o)
	enc = protowire.AppendTag(enc, 100, protowire.VarintType)
	enc = protowire.AppendVarint(enc, 42)
	enc = protowire.AppendTag(enc, 101, protowire.BytesType)
	enc = protowire.AppendBytes(enc, []byte("new"))
	enc = protowire.AppendTag(enc, 102, protowire.Fixed32Type)
	enc = protowire.AppendFixed32(enc, 1)
	enc = protowire.AppendTag(enc, 103, protowire.Fixed64Type)
	enc = protowire.AppendFixed64(enc, 1)
	got, err := decodeOutgoing(enc)
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Errorf("got %+v, %v; want %+v", got, err, o)
	}
}

func TestCodecRejects(t *testing.T) {
	o := outgoing(5)
	valid := encodeOutgoing(&o)
	field := func(b []byte, num protowire.Number, typ protowire.Type, v uint64) []byte {
		b = protowire.AppendTag(b, num, typ)
		if typ == protowire.BytesType {
			return protowire.AppendBytes(b, make([]byte, v))
		}
		return protowire.AppendVarint(b, v)
	}
	v1 := []byte{formatV1}
	cases := map[string][]byte{
		"empty":               nil,
		"format byte only":    v1, // no ID, no peer
		"unknown format":      append([]byte{2}, valid[1:]...),
		"truncated":           valid[:len(valid)-3],
		"truncated tag":       append(append([]byte{}, valid...), 0x80),
		"field number 0":      append(append([]byte{}, valid...), 0x00, 0x01),
		"start group":         protowire.AppendTag(append([]byte{}, valid...), 100, protowire.StartGroupType),
		"wire type 6":         protowire.AppendVarint(append([]byte{}, valid...), 100<<3|6),
		"ID as bytes":         field(append([]byte{}, v1...), outID, protowire.BytesType, 3),
		"peer as varint":      field(append([]byte{}, valid...), outPeer, protowire.VarintType, 3),
		"kind over 255":       field(append([]byte{}, valid...), outKind, protowire.VarintType, 257),
		"unknown kind":        field(append([]byte{}, valid...), outKind, protowire.VarintType, 3),
		"attempts over int32": field(append([]byte{}, valid...), outAttempts, protowire.VarintType, 1<<40),
		"time as bytes":       field(append([]byte{}, valid...), outCreated, protowire.BytesType, 8),
		"bytes past the end":  append(protowire.AppendTag(append([]byte{}, valid...), outPayload, protowire.BytesType), 10, 1),
	}
	for name, b := range cases {
		if got, err := decodeOutgoing(b); err == nil {
			t.Errorf("%s: decoded %+v", name, got)
		}
	}

	in := incoming("p", 1)
	for name, b := range map[string][]byte{
		"no peer":       field(append([]byte{}, v1...), inState, protowire.VarintType, 1),
		"unknown state": field(encodeIncoming(&in), inState, protowire.VarintType, 4),
		"state 0":       field(append(append([]byte{}, v1...), encodeIncoming(&in)[1:]...), inState, protowire.VarintType, 0),
		"long peer":     field(encodeIncoming(&in), inPeer, protowire.BytesType, maxPeerLen+1),
		// Answered marks an InHandled request only; it is a bool.
		"answered pending": field(encodeIncoming(&in), inAnswered, protowire.VarintType, 1),
		"answered 2": field(encodeIncoming(&Incoming{Peer: "p", Kind: KindRequest, State: InHandled}),
			inAnswered, protowire.VarintType, 2),
	} {
		if got, err := decodeIncoming(b); err == nil {
			t.Errorf("incoming %s: decoded %+v", name, got)
		}
	}

	d := deadLetter(1)
	for name, b := range map[string][]byte{
		"no outgoing":        field(append([]byte{}, v1...), deadReason, protowire.BytesType, 2),
		"outgoing as varint": field(append([]byte{}, v1...), deadOutgoing, protowire.VarintType, 2),
		"bad nested":         field(encodeDeadLetter(&d), deadOutgoing, protowire.BytesType, 2),
	} {
		if got, err := decodeDeadLetter(b); err == nil {
			t.Errorf("dead letter %s: decoded %+v", name, got)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, c := range []struct {
		peer string
		id   uint64
	}{{"a", 0}, {"peer", 1<<64 - 1}, {strings.Repeat("z", maxPeerLen), 42}} {
		peer, id, err := parseIncomingKey(incomingKey(c.peer, c.id))
		if err != nil || peer != c.peer || id != c.id {
			t.Errorf("incoming key %q/%d read back as %q/%d, %v", c.peer, c.id, peer, id, err)
		}
	}
	for _, k := range [][]byte{nil, {0}, {5, 'a'}, append(incomingKey("ab", 1), 0)} {
		if _, _, err := parseIncomingKey(k); err == nil {
			t.Errorf("incoming key %x accepted", k)
		}
	}
	if id, err := parseIDKey(idKey(1 << 40)); err != nil || id != 1<<40 {
		t.Errorf("ID key read back as %d, %v", id, err)
	}
	if _, err := parseIDKey([]byte{1, 2, 3}); err == nil {
		t.Error("short ID key accepted")
	}
}

func TestTimesOutsideNanosecondRangeAreInvalid(t *testing.T) {
	var b Batch
	o := outgoing(1)
	o.Created = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	b.PutOutgoing(o)
	if b.err == nil {
		t.Error("a time past 2262 was accepted")
	}
}

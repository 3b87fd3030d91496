package store

import (
	"reflect"
	"testing"
)

// FuzzRecords feeds arbitrary bytes, as a damaged or hostile file could hold,
// to every record decoder. None may panic, and whatever decodes must encode
// to bytes that decode to the same record.
func FuzzRecords(f *testing.F) {
	outs, ins, dls := sampleRecords()
	for _, o := range outs {
		f.Add(encodeOutgoing(&o))
	}
	for _, in := range ins {
		f.Add(encodeIncoming(&in))
	}
	for _, d := range dls {
		f.Add(encodeDeadLetter(&d))
	}
	f.Add([]byte{})
	f.Add([]byte{formatV1})

	f.Fuzz(func(t *testing.T, data []byte) {
		if o, err := decodeOutgoing(data); err == nil {
			if err := o.validate(); err != nil {
				t.Fatalf("decoded an invalid outgoing record %+v: %v", o, err)
			}
			again, err := decodeOutgoing(encodeOutgoing(&o))
			if err != nil || !reflect.DeepEqual(again, o) {
				t.Fatalf("outgoing %+v re-encoded as %+v, %v", o, again, err)
			}
		}
		if in, err := decodeIncoming(data); err == nil {
			if err := in.validate(); err != nil {
				t.Fatalf("decoded an invalid incoming record %+v: %v", in, err)
			}
			again, err := decodeIncoming(encodeIncoming(&in))
			if err != nil || !reflect.DeepEqual(again, in) {
				t.Fatalf("incoming %+v re-encoded as %+v, %v", in, again, err)
			}
		}
		if d, err := decodeDeadLetter(data); err == nil {
			if err := d.validate(); err != nil {
				t.Fatalf("decoded an invalid dead letter %+v: %v", d, err)
			}
			again, err := decodeDeadLetter(encodeDeadLetter(&d))
			if err != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("dead letter %+v re-encoded as %+v, %v", d, again, err)
			}
		}
		// Keys come from the file too.
		if peer, id, err := parseIncomingKey(data); err == nil {
			if k := incomingKey(peer, id); string(k) != string(data) {
				t.Fatalf("incoming key %x re-encoded as %x", data, k)
			}
		}
	})
}

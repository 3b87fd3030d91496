package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

type noDeadline struct{}

func (noDeadline) watch(time.Duration) {}
func (noDeadline) unwatch()            {}

// FuzzReadFrame feeds arbitrary bytes to the frame decoder a peer's stream
// goes through, both ways (Data and Acks share the stream), and to
// protobuf's own (protodelim into pb.Frame) alongside: the two must accept
// and refuse alike, frame by frame, and read the same values. It must
// never panic nor return a payload over the limit.
func FuzzReadFrame(f *testing.F) {
	add := func(m *pb.Frame) {
		var buf bytes.Buffer
		protodelim.MarshalTo(&buf, m)
		f.Add(buf.Bytes())
	}
	add(pb.DataFrame(&pb.Data{Id: 1, Payload: []byte("hello")}))
	add(pb.DataFrame(&pb.Data{Id: 1<<64 - 1, Channel: 7, FromChannel: 9, LazyAck: true, Payload: bytes.Repeat([]byte{0xaa}, 200)}))
	add(pb.DataFrame(&pb.Data{}))
	add(pb.AckFrame(&pb.Ack{Id: 42, Reason: pb.Reason_BUSY}))
	add(pb.AckFrame(&pb.Ack{}))
	add(&pb.Frame{})
	{
		// A data frame and an ack back to back, as on a busy stream.
		var buf bytes.Buffer
		protodelim.MarshalTo(&buf, pb.DataFrame(&pb.Data{Id: 2, Payload: []byte("reply")}))
		protodelim.MarshalTo(&buf, pb.AckFrame(&pb.Ack{Id: 1, Reason: pb.Reason_OK}))
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x05, 0x08})
	f.Add([]byte{0x03, 0x1a, 0x7f, 0x00})
	f.Add([]byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x7f})
	f.Add([]byte{})

	f.Add([]byte{0x04, 0x0a, 0x02, 0x08, 0x01})                         // data, id 1
	f.Add([]byte{0x06, 0x0a, 0x04, 0x10, 0x01, 0x08, 0x01})             // fields out of order
	f.Add([]byte{0x06, 0x0a, 0x02, 0x08, 0x01, 0x12, 0x00})             // data then ack: malformed
	f.Add([]byte{0x08, 0x0a, 0x02, 0x08, 0x01, 0x0a, 0x02, 0x10, 0x03}) // data twice: malformed
	f.Add([]byte{0x06, 0x0a, 0x02, 0x08, 0x01, 0x10, 0x01})             // data, then field 2 as a varint: unknown
	f.Add([]byte{0x05, 0x12, 0x03, 0x10, 0xff, 0x01})                   // a reason out of the enum
	f.Add([]byte{0x05, 0x0a, 0x03, 0x30, 0x01, 0x08})                   // unknown field

	const limit = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		ours := bufio.NewReaderSize(bytes.NewReader(in), 64)
		theirs := bufio.NewReaderSize(bytes.NewReader(in), 64)
		rest := in // the frames not yet read, for their bytes
		for i := 0; ; i++ {
			var got frame
			err := readFrame(ours, noDeadline{}, limit+frameOverhead, time.Second, &got)
			var m pb.Frame
			perr := protodelim.UnmarshalOptions{MaxSize: limit + frameOverhead}.UnmarshalFrom(theirs, &m)
			var body []byte
			if perr == nil {
				size, n := protowire.ConsumeVarint(rest)
				body, rest = rest[n:n+int(size)], rest[n+int(size):]
			}
			if perr == nil && bodyFields(body) > 1 {
				// The one departure from protobuf: more than one body
				// field is malformed (docs/PROTOCOL.md §4.3).
				if errClass(err) != "malformed" {
					t.Fatalf("frame %d with %d body fields: our decoder says %v, want malformed", i, bodyFields(body), err)
				}
				return
			}
			if errClass(err) != errClass(perr) {
				t.Fatalf("frame %d: our decoder says %v, protobuf says %v", i, err, perr)
			}
			if err != nil {
				return
			}
			if want := fromProto(&m); !sameFrame(got, want) {
				t.Fatalf("frame %d: decoded %+v, protobuf reads %+v", i, got, want)
			}
			if n := len(got.payload); n > limit+frameOverhead {
				t.Fatalf("accepted a %d-byte payload over the limit", n)
			}
			_ = reasonFromWire(got.reason)
		}
	})
}

// errClass sorts a decoding error by what the stream does with it.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case frameTooLarge(err):
		return "too large"
	default:
		return "malformed"
	}
}

func fromProto(m *pb.Frame) frame {
	switch body := m.Body.(type) {
	case *pb.Frame_Data:
		d := body.Data
		return frame{kind: frameKindData, id: d.Id, channel: d.Channel, fromChannel: d.FromChannel, lazy: d.LazyAck, payload: d.Payload}
	case *pb.Frame_Ack:
		return frame{kind: frameKindAck, id: body.Ack.Id, reason: body.Ack.Reason}
	}
	return frame{}
}

func sameFrame(a, b frame) bool {
	return a.kind == b.kind && a.id == b.id && a.channel == b.channel && a.fromChannel == b.fromChannel &&
		a.lazy == b.lazy && a.reason == b.reason && bytes.Equal(a.payload, b.payload)
}

// The hand-written encoders write exactly what protobuf writes.
func TestEncodersMatchProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	varint := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return rng.Uint64N(200)
		default:
			return rng.Uint64() >> rng.UintN(64)
		}
	}
	for i := range 2000 {
		var ours, theirs bytes.Buffer
		bw := bufio.NewWriterSize(&ours, 64) // small: payloads overflow it
		var want *pb.Frame
		if i%2 == 0 {
			d := &pb.Data{Id: varint(), Channel: uint32(varint()), FromChannel: uint32(varint()), LazyAck: rng.IntN(2) == 0}
			if n := rng.IntN(300); n > 0 {
				d.Payload = bytes.Repeat([]byte{byte(i)}, n)
			}
			if err := writeDataFrame(bw, d.Id, d.Channel, d.FromChannel, d.LazyAck, d.Payload); err != nil {
				t.Fatal(err)
			}
			want = pb.DataFrame(d)
		} else {
			a := &pb.Ack{Id: varint(), Reason: pb.Reason(rng.IntN(10) - 1)}
			if err := writeAckFrame(bw, a.Id, a.Reason); err != nil {
				t.Fatal(err)
			}
			want = pb.AckFrame(a)
		}
		bw.Flush()
		if _, err := protodelim.MarshalTo(&theirs, want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours.Bytes(), theirs.Bytes()) {
			t.Fatalf("%v:\nours   %x\nproto  %x", want, ours.Bytes(), theirs.Bytes())
		}
	}
}

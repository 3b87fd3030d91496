package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/bitvmx/go-bitvmx-p2p/p2p/pb"
)

type noDeadline struct{}

func (noDeadline) SetReadDeadline(time.Time) error { return nil }

// FuzzReadFrame feeds arbitrary bytes to the frame decoder a peer's stream
// goes through, both ways (Data and Acks share the stream): it must never
// panic, never accept a frame over the limit, and never return a Data frame
// with a payload larger than the limit.
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

	const limit = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 64)
		var m pb.Frame
		for {
			err := readFrame(br, noDeadline{}, limit+frameOverhead, time.Second, &m)
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || frameTooLarge(err) {
					return
				}
				return // malformed: rejected, as it must be
			}
			if n := len(m.GetData().GetPayload()); n > limit+frameOverhead {
				t.Fatalf("accepted a %d-byte payload over the limit", n)
			}
			_ = reasonFromWire(m.GetAck().GetReason())
		}
	})
}

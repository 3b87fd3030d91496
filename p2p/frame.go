package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ProtocolID is the libp2p protocol of the acked message stream. Version 2
// carries Data and Acks in both directions of one stream (docs/PROTOCOL.md);
// it does not speak to version 1.
const ProtocolID = "/bitvmx/msg/2.0.0"

// frameOverhead is the most a Frame adds to its payload, field tags
// included: the Frame's data field (tag and length), the Data's id, both
// channels, lazy_ack, and the payload's tag and length.
const frameOverhead = 3*(1+binary.MaxVarintLen64) + 2*(1+binary.MaxVarintLen32) + 2

// streamBufSize is the read buffer per stream: large enough that a burst of
// pipelined small frames is decoded without a syscall each.
const streamBufSize = 16 << 10

type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// readFrame reads one length-delimited message of at most maxSize bytes into
// m. Waiting for a frame to start is not timed: an idle stream is legal. Once
// its first byte is here the whole frame must follow within timeout, so a
// peer that dribbles a frame cannot hold the stream (slowloris). The size is
// checked before anything is allocated.
func readFrame(br *bufio.Reader, s readDeadliner, maxSize int, timeout time.Duration, m proto.Message) error {
	if _, err := br.Peek(1); err != nil {
		return err
	}
	if !frameBuffered(br) {
		if err := s.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		defer s.SetReadDeadline(time.Time{})
	}
	proto.Reset(m)
	return protodelim.UnmarshalOptions{MaxSize: int64(maxSize)}.UnmarshalFrom(br, m)
}

// frameBuffered reports whether a whole frame is already in br, in which case
// reading it cannot block and setting a deadline would be wasted work.
func frameBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(min(br.Buffered(), binary.MaxVarintLen64))
	size, n := protowire.ConsumeVarint(b)
	return n > 0 && uint64(br.Buffered()-n) >= size
}

// writeFrame appends one length-delimited message to w.
func writeFrame(w io.Writer, m proto.Message) error {
	_, err := protodelim.MarshalTo(w, m)
	return err
}

// frameTooLarge reports whether err is a length prefix over the limit.
func frameTooLarge(err error) bool {
	var tl *protodelim.SizeTooLargeError
	return errors.As(err, &tl)
}

package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
)

// ProtocolID is the libp2p protocol of the acked message stream. Version 2
// carries Data and Acks in both directions of one stream (docs/PROTOCOL.md);
// it does not speak to version 1.
const ProtocolID = "/bitvmx/msg/2.0.0"

// frameOverhead is the most a Frame adds to its payload, field tags
// included: the Frame's data field (tag and length), the Data's id, both
// channels, lazy_ack, and the payload's tag and length.
const frameOverhead = 3*(1+binary.MaxVarintLen64) + 2*(1+binary.MaxVarintLen32) + 2

// frameWatch bounds the arrival of a frame whose first byte is here: a
// read of the stream still waiting for the frame's rest timeout after watch
// fails with a timeout.
type frameWatch interface {
	watch(timeout time.Duration)
	// unwatch ends the watch, once the frame has been read or has failed.
	unwatch()
}

// readFrame reads one length-delimited Frame of at most maxSize bytes into
// f. Waiting for a frame to start is not timed: an idle stream is legal.
// Once its first byte is here the whole frame must follow within timeout
// (w), so a peer that dribbles a frame cannot hold the stream (slowloris).
// The size is checked before anything is allocated. Errors are those of
// protodelim.UnmarshalFrom: io.EOF before a frame, io.ErrUnexpectedEOF
// within one, a *protodelim.SizeTooLargeError, or a decoding error.
func readFrame(br *bufio.Reader, w frameWatch, maxSize int, timeout time.Duration, f *frame) error {
	if _, err := br.Peek(1); err != nil {
		return err
	}
	if !frameBuffered(br) {
		w.watch(timeout)
		defer w.unwatch()
	}
	var prefix [binary.MaxVarintLen64]byte
	n := 0
	for n < len(prefix) {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				break // a truncated prefix: ConsumeVarint says so
			}
			return err
		}
		prefix[n] = c
		n++
		if c < 0x80 {
			break
		}
	}
	size, m := protowire.ConsumeVarint(prefix[:n])
	if m < 0 {
		return protowire.ParseError(m)
	}
	if size > uint64(maxSize) {
		return &protodelim.SizeTooLargeError{Size: size, MaxSize: uint64(maxSize)}
	}
	b, err := br.Peek(int(size))
	if err == nil {
		defer br.Discard(int(size))
	} else {
		// Larger than the reader's buffer, or cut short.
		b = make([]byte, size)
		_, err = io.ReadFull(br, b)
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	return f.decode(b)
}

// frameBuffered reports whether a whole frame is already in br, in which case
// reading it cannot block and setting a deadline would be wasted work.
func frameBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(min(br.Buffered(), binary.MaxVarintLen64))
	size, n := protowire.ConsumeVarint(b)
	return n > 0 && uint64(br.Buffered()-n) >= size
}

// frameTooLarge reports whether err is a length prefix over the limit.
func frameTooLarge(err error) bool {
	var tl *protodelim.SizeTooLargeError
	return errors.As(err, &tl)
}

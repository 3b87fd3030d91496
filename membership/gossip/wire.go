package gossip

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/gossip/pb"
)

// MaxFrameSize bounds one frame: a document of the largest size plus the
// frame's own field tag and length.
const MaxFrameSize = membership.MaxDocumentSize + 16

// errFrame marks a frame that does not decode or comes out of order: the
// peer broke the protocol.
var errFrame = errors.New("bad membership frame")

// frame is one decoded frame: a hello or a document, never both.
type frame struct {
	hello   *hello
	doc     *membership.Document
	docSize int
}

type hello struct {
	version uint64
	hash    membership.Hash
}

// readFrame reads one uvarint-delimited Frame of at most MaxFrameSize
// bytes from br, which reads from tr. It returns io.EOF at a clean end of
// stream; an error wrapping errFrame (and, for a document, the
// membership sentinel) when the peer got the frame wrong, a truncated
// frame included; any other error comes from the transport (a reset, a
// deadline).
func readFrame(br *bufio.Reader, tr *transportReader) (frame, error) {
	size, err := binary.ReadUvarint(br)
	switch {
	case tr.err != nil:
		return frame{}, tr.err
	case errors.Is(err, io.EOF):
		return frame{}, io.EOF
	case err != nil:
		return frame{}, fmt.Errorf("%w: length prefix: %v", errFrame, err)
	case size > MaxFrameSize:
		// Refused before anything is allocated.
		return frame{}, fmt.Errorf("%w: frame of %d bytes, at most %d", errFrame, size, MaxFrameSize)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(br, buf); err != nil {
		if tr.err != nil {
			return frame{}, tr.err
		}
		return frame{}, fmt.Errorf("%w: truncated frame: %v", errFrame, err)
	}
	return decodeFrame(buf)
}

// decodeFrame parses the bytes of one frame, without its length prefix.
func decodeFrame(buf []byte) (frame, error) {
	var m pb.Frame
	if err := proto.Unmarshal(buf, &m); err != nil {
		return frame{}, fmt.Errorf("%w: %v", errFrame, err)
	}
	switch k := m.Kind.(type) {
	case *pb.Frame_Hello:
		h := &hello{version: k.Hello.GetVersion()}
		if len(k.Hello.GetHash()) != len(h.hash) {
			return frame{}, fmt.Errorf("%w: hello with a %d-byte hash", errFrame, len(k.Hello.GetHash()))
		}
		copy(h.hash[:], k.Hello.GetHash())
		return frame{hello: h}, nil
	case *pb.Frame_Document:
		d, err := membership.Decode(k.Document)
		if err != nil {
			return frame{docSize: len(k.Document)}, fmt.Errorf("%w: %w", errFrame, err)
		}
		return frame{doc: d, docSize: len(k.Document)}, nil
	default:
		return frame{}, fmt.Errorf("%w: empty frame", errFrame)
	}
}

// transportReader remembers the first error of the stream other than
// io.EOF, so that readFrame can tell a broken connection (nobody's fault)
// from a malformed frame (the peer's).
type transportReader struct {
	r   io.Reader
	err error
}

func (t *transportReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// writeHello writes a Hello frame.
func writeHello(w io.Writer, version uint64, h membership.Hash) error {
	_, err := protodelim.MarshalTo(w, &pb.Frame{Kind: &pb.Frame_Hello{Hello: &pb.Hello{Version: version, Hash: h[:]}}})
	return err
}

// writeDocument writes a document frame.
func writeDocument(w io.Writer, d *membership.Document) error {
	data, err := d.Encode()
	if err != nil {
		return err
	}
	_, err = protodelim.MarshalTo(w, &pb.Frame{Kind: &pb.Frame_Document{Document: data}})
	return err
}

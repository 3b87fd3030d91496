package gossip

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
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

// frame is one decoded frame: a hello or a document, never both. A
// document is left encoded: decoding it parses every member's key, which
// the session pays only for a version it may apply (peekDocument).
type frame struct {
	hello *hello
	doc   []byte
}

type hello struct {
	version uint64
	hash    membership.Hash
}

// readFrame reads one uvarint-delimited Frame of at most MaxFrameSize
// bytes from br, which reads from tr. It returns io.EOF at a clean end of
// stream; an error wrapping errFrame when the peer got the frame wrong, a
// truncated frame included; any other error comes from the transport (a
// reset, a deadline).
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
		if k.Document == nil {
			// Present but empty: still a document frame.
			k.Document = []byte{}
		}
		return frame{doc: k.Document}, nil
	default:
		return frame{}, fmt.Errorf("%w: empty frame", errFrame)
	}
}

// decodeDocument decodes the document of a frame; its error wraps errFrame
// and the membership sentinel.
func decodeDocument(data []byte) (*membership.Document, error) {
	d, err := membership.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFrame, err)
	}
	return d, nil
}

// peekDocument returns the version and expiry (Unix seconds, 0 for none)
// that an encoded document's body states, without checking anything else:
// no member key is parsed, so it costs a small part of a decoding. The
// session uses it to refuse, before decoding, the versions it would refuse
// anyway and does not charge for. It reads the fields as proto3 does (the
// last occurrence wins); an error wraps errFrame.
func peekDocument(data []byte) (version uint64, expires int64, err error) {
	body, err := lastBytes(data, 1)
	if err != nil {
		return 0, 0, err
	}
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, fmt.Errorf("%w: body: %v", errFrame, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 1 || num == 4) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, 0, fmt.Errorf("%w: body: %v", errFrame, protowire.ParseError(n))
			}
			if num == 1 {
				version = v
			} else {
				expires = int64(v)
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, 0, fmt.Errorf("%w: body: %v", errFrame, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return version, expires, nil
}

// peekHash returns the hash of an encoded document (Document.Hash) without
// decoding it.
func peekHash(data []byte) (membership.Hash, error) {
	body, err := lastBytes(data, 1)
	if err != nil {
		return membership.Hash{}, err
	}
	h := sha256.New()
	h.Write([]byte(membership.SignPrefix))
	h.Write(body)
	var out membership.Hash
	h.Sum(out[:0])
	return out, nil
}

// lastBytes returns the last occurrence of the bytes field num of the
// message msg (empty if there is none).
func lastBytes(msg []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, fmt.Errorf("%w: document: %v", errFrame, protowire.ParseError(l))
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return nil, fmt.Errorf("%w: document: %v", errFrame, protowire.ParseError(l))
			}
			out, msg = v, msg[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, msg); l < 0 {
			return nil, fmt.Errorf("%w: document: %v", errFrame, protowire.ParseError(l))
		}
		msg = msg[l:]
	}
	return out, nil
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

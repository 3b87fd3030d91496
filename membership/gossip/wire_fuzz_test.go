package gossip

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/membership"
)

// FuzzReadFrame feeds arbitrary bytes to the frame reader: it must never
// panic, must refuse as the peer's fault (errFrame) whatever is not a clean
// end of stream, and whatever it accepts must encode back to the same
// content.
func FuzzReadFrame(f *testing.F) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		f.Fatal(err)
	}
	d, err := membership.Genesis([]membership.Member{{ID: id, Name: "op"}}, 1, membership.Body{}.Expires)
	if err != nil {
		f.Fatal(err)
	}
	var seed bytes.Buffer
	if err := writeHello(&seed, d.Version(), d.Hash()); err != nil {
		f.Fatal(err)
	}
	if err := writeDocument(&seed, d); err != nil {
		f.Fatal(err)
	}
	f.Add(seed.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x05, 0x0a, 0x03, 0x08, 0x01, 0x12})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := &transportReader{r: bytes.NewReader(data)}
		br := bufio.NewReader(tr)
		for i := 0; i < 16; i++ {
			fr, err := readFrame(br, tr)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !errors.Is(err, errFrame) {
					t.Fatalf("error %v is not the peer's fault", err)
				}
				return
			}
			var out bytes.Buffer
			var doc *membership.Document
			if fr.doc != nil {
				// Peeked, then decoded, as a session does.
				if _, _, err := peekDocument(fr.doc); err != nil && !errors.Is(err, errFrame) {
					t.Fatalf("peek error %v is not the peer's fault", err)
				}
				if doc, err = decodeDocument(fr.doc); err != nil {
					if !errors.Is(err, errFrame) {
						t.Fatalf("error %v is not the peer's fault", err)
					}
					continue
				}
				if v, _, err := peekDocument(fr.doc); err != nil || v != doc.Version() {
					t.Fatalf("a document of version %d peeks as %d, %v", doc.Version(), v, err)
				}
			}
			switch {
			case fr.hello != nil:
				if err := writeHello(&out, fr.hello.version, fr.hello.hash); err != nil {
					t.Fatal(err)
				}
			case doc != nil:
				if err := writeDocument(&out, doc); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatal("a frame with neither a hello nor a document")
			}
			again, err := readFrame(bufio.NewReader(&out), &transportReader{})
			if err != nil {
				t.Fatalf("re-encoded frame does not decode: %v", err)
			}
			if fr.hello != nil && *again.hello != *fr.hello {
				t.Fatalf("hello %+v became %+v", fr.hello, again.hello)
			}
			if doc != nil {
				if d, err := decodeDocument(again.doc); err != nil || d.Hash() != doc.Hash() {
					t.Fatalf("document %s became %v, %v", doc, d, err)
				}
			}
		}
	})
}

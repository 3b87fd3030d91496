package dht

import (
	"bytes"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// FuzzOpenSealed feeds arbitrary bytes to the reading of sealed records:
// the header check every node runs (openSealedHeader) and the decryption a
// member runs (unsealRecord), with a secp256k1 and an ed25519 member's key.
// Neither may panic, and whatever opens must be the publisher's record and
// agree with its header. The seeds, which go test runs, are valid records
// and copies of one with a byte flipped every few bytes, so that every
// field and every wrap gets a damaged variant.
func FuzzOpenSealed(f *testing.F) {
	pub, secp, ed := tu.NewIdentity(f), tu.NewIdentity(f), edIdentity(f)
	now := time.Now()
	doc := memberDoc(f, 3, pub, secp, ed)
	valid := sealFor(f, recordOf(pub, now), pub, doc)
	f.Add(valid)
	f.Add(sealFor(f, recordOf(pub, now), pub, memberDoc(f, 1, pub)))
	plain, err := sealRecord(recordOf(pub, now), pub.Key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add([]byte{})
	f.Add(valid[:len(valid)/2])
	for i := 0; i < len(valid); i += 7 {
		b := bytes.Clone(valid)
		b[i] ^= 0x5a
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr, herr := openSealedHeader(pub.ID, data)
		for _, reader := range []tu.Identity{secp, ed} {
			r, err := unsealRecord(pub.ID, data, reader.Key)
			if err != nil {
				continue
			}
			if r.Peer != pub.ID || len(r.Addrs) > MaxRecordAddrs || !r.Expires.After(r.Published) {
				t.Fatalf("opened an invalid record: %+v", r)
			}
			if herr == nil && (r.Seq != hdr.Seq || !r.Expires.Equal(hdr.Expires)) {
				t.Fatalf("content %+v disagrees with header %+v", r, hdr)
			}
		}
	})
}

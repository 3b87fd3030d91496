package dht

import (
	"fmt"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// BenchmarkSealedRecord measures a sealed record for 10, 50 and 100
// members, all secp256k1 (the default key) or all ed25519: seal is what a
// publisher does (encrypt, one wrap per member, sign), verify what every
// storing node does (the header: signature and limits), open what a reader
// does (verify, then decrypt its wrap and the content). bytes/record is the
// size stored in the DHT; plain-bytes/record the format 1 record of the same
// node, for comparison. docs/dht.md quotes the results.
func BenchmarkSealedRecord(b *testing.B) {
	for _, kind := range []string{"secp256k1", "ed25519"} {
		for _, n := range []int{10, 50, 100} {
			ids := make([]tu.Identity, n)
			for i := range ids {
				if kind == "ed25519" {
					ids[i] = edIdentity(b)
				} else {
					ids[i] = tu.NewIdentity(b)
				}
			}
			pub, reader := ids[0], ids[n-1]
			doc := memberDoc(b, 1, ids...)
			r := recordOf(pub, time.Now())
			data := sealFor(b, r, pub, doc)
			plain, err := sealRecord(r, pub.Key)
			if err != nil {
				b.Fatal(err)
			}
			report := func(b *testing.B) {
				b.ReportMetric(float64(len(data)), "bytes/record")
				b.ReportMetric(float64(len(plain)), "plain-bytes/record")
			}
			name := fmt.Sprintf("%s/members=%d", kind, n)
			b.Run("seal/"+name, func(b *testing.B) {
				for b.Loop() {
					if _, _, err := sealSealedRecord(r, pub.Key, doc); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
			b.Run("verify/"+name, func(b *testing.B) {
				for b.Loop() {
					if _, err := openSealedHeader(pub.ID, data); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
			b.Run("open/"+name, func(b *testing.B) {
				for b.Loop() {
					if _, err := openSealedHeader(pub.ID, data); err != nil {
						b.Fatal(err)
					}
					if _, err := unsealRecord(pub.ID, data, reader.Key); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
		}
	}
}

package membership

import (
	"testing"
)

// BenchmarkVerify100 verifies a version of a 100-member membership signed
// by the 67 members its threshold needs: the cost of accepting one change.
func BenchmarkVerify100(b *testing.B) {
	ops := newOperators(b, 100, false)
	g := mustGenesis(b, ops, 67)
	next := propose(b, g, func(body *Body) { body.Members[0].Name = "renamed" }, ops[:67]...)
	data, err := next.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer() // also drops metrics reported before it
	for b.Loop() {
		d, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := VerifyNext(g, d, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "doc-bytes")
}

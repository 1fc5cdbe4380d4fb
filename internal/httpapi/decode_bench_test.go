package httpapi

import "testing"

// BenchmarkDecodeBytes decodes the bodies of the busiest writes: a join of
// the waiting room and a hold of two items. The key check's walk was most
// of a join's decoding (BENCHMARKS.md, 2026-12-06).
func BenchmarkDecodeBytes(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"join", `{"user_email":"join-12-3456@example.com"}`},
		{"hold", `{"event_id":1,"user_email":"buyer-12-3456@example.com","items":[{"category_id":1,"quantity":2},{"category_id":2,"quantity":1}]}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := []byte(bc.body)
			b.ReportAllocs()
			for b.Loop() {
				var v body
				if err := DecodeBytes(raw, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

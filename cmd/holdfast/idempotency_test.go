package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
)

func (ts *testServer) keyRows() int {
	ts.t.Helper()
	var n int
	if err := ts.db().GetContext(context.Background(), &n, `SELECT count(*) FROM idempotency_keys`); err != nil {
		ts.t.Fatal(err)
	}
	return n
}

// Keys were stored for every answer but 429 and 5xx: 3,000 requests for an
// event that does not exist, each with a new key, stored 3,000 rows. The
// contract stores a key only for 200, 201, 409, 410 and 422.
func TestIdempotencyKeysAreNotStoredFor400Or404(t *testing.T) {
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) { c.Batch = batch })
		small := ts.newEvent(1, true)
		key := func(i int) []string { return []string{"Idempotency-Key", fmt.Sprintf("k%d", i)} }
		for i := 0; i < 20; i++ {
			expectError(t, "hold for no event", ts.do("POST", "/holds", order(999999, "a@example.com", 1), key(i)...), 404, "not_found")
			expectError(t, "booking for no event", ts.do("POST", "/book/safe", order(999999, "a@example.com", 1), key(i)...), 404, "not_found")
			expectError(t, "confirm of no hold", ts.do("POST", "/holds/00000000-0000-4000-8000-00000000000"+fmt.Sprint(i%10)+"/confirm", nil, key(i)...), 404, "not_found")
			// /book/safe answers sold out with the seed's 400.
			expectError(t, "booking sold out", ts.do("POST", "/book/safe", order(small, "a@example.com", 2), key(100+i)...), 400, "sold_out")
		}
		if n := ts.keyRows(); n != 0 {
			t.Fatalf("%d idempotency keys stored for 400 and 404 answers, want 0", n)
		}
		// The answers a retry must see are stored, one row each.
		if res := ts.do("POST", "/holds", order(small, "a@example.com", 2), key(1000)...); res.Status != http.StatusConflict {
			t.Fatalf("sold-out hold: %d %s", res.Status, res.Body)
		}
		if res := ts.do("POST", "/holds", order(small, "a@example.com", 1), key(1001)...); res.Status != http.StatusCreated {
			t.Fatalf("hold: %d %s", res.Status, res.Body)
		}
		if n := ts.keyRows(); n != 2 {
			t.Fatalf("%d idempotency keys stored for a 409 and a 201, want 2", n)
		}
	})
}

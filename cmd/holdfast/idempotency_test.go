package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
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

// A confirm's key is scoped to its hold: the same key on another hold
// confirms that hold, never replays the first hold's answer. Confirm has no
// body, so without the hold id in the scope both requests hash alike.
func TestConfirmKeyReusedOnAnotherHold(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(10, true)
	one, two := ts.mustHold(ev, 1), ts.mustHold(ev, 2)
	key := []string{"Idempotency-Key", "same-key"}
	var got [2]holdBody
	for i, h := range []holdBody{one, two} {
		res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil, key...)
		if res.Status != http.StatusOK {
			t.Fatalf("confirm %s: %d %s", h.ID, res.Status, res.Body)
		}
		res.json(t, &got[i])
	}
	if got[1].ID != two.ID || got[1].Status != "confirmed" {
		t.Fatalf("confirm of the second hold with the first's key answered %+v, want hold %s confirmed", got[1], two.ID)
	}
	var status string
	if err := ts.db().GetContext(context.Background(), &status, `SELECT booking_status FROM bookings WHERE hold_id = $1`, two.ID); err != nil || status != "confirmed" {
		t.Fatalf("second hold is %q in the database (%v), want confirmed", status, err)
	}
	// Still a replay on its own hold.
	res := ts.do("POST", "/holds/"+one.ID+"/confirm", nil, key...)
	if res.Status != http.StatusOK || res.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat on the first hold: %d, replayed %q", res.Status, res.Header.Get("Idempotent-Replayed"))
	}
}

// A retry of a keyed hold whose answer is kept shares its batch with the
// event's fresh requests; with the event row held past the lock wait, the
// batch failed and the retry was told busy, though its answer (a 201) was
// kept. It replays it.
func TestAKeyedRetryReplaysThoughItsBatchFails(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.LockWait = 600 * time.Millisecond })
	ev := ts.newEvent(100, true)
	key := []string{"Idempotency-Key", "kept"}
	first := ts.do("POST", "/holds", order(ev, "a@example.com", 2), key...)
	if first.Status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	tx, err := ts.db().BeginTxx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(context.Background(), `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
		t.Fatal(err)
	}
	// One fresh hold waits on the row; a fresh one and the retry queue
	// behind it, for the event's next batch.
	var wg sync.WaitGroup
	var retry response
	wg.Add(3)
	go func() { defer wg.Done(); ts.do("POST", "/holds", order(ev, "b@example.com", 1)) }()
	time.Sleep(150 * time.Millisecond)
	go func() { defer wg.Done(); ts.do("POST", "/holds", order(ev, "c@example.com", 1)) }()
	go func() { defer wg.Done(); retry = ts.do("POST", "/holds", order(ev, "a@example.com", 2), key...) }()
	wg.Wait()
	if retry.Status != http.StatusCreated || string(retry.Body) != string(first.Body) || retry.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the retry: %d %s, want the first answer replayed: %s", retry.Status, retry.Body, first.Body)
	}
}

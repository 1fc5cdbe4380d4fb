package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type holdBody struct {
	ID          string  `json:"id"`
	EventID     int64   `json:"event_id"`
	UserEmail   string  `json:"user_email"`
	Quantity    int     `json:"quantity"`
	TotalAmount string  `json:"total_amount"`
	Status      string  `json:"status"`
	ExpiresAt   string  `json:"expires_at"`
	CreatedAt   string  `json:"created_at"`
	ConfirmedAt *string `json:"confirmed_at"`
}

func order(ev int64, email string, qty int) string {
	return fmt.Sprintf(`{"event_id":%d,"user_email":%q,"quantity":%d}`, ev, email, qty)
}

// mustHold takes a hold and fails the test unless it gets one.
func (ts *testServer) mustHold(ev int64, qty int) holdBody {
	ts.t.Helper()
	res := ts.do("POST", "/holds", order(ev, "buyer@example.com", qty))
	if res.Status != http.StatusCreated {
		ts.t.Fatalf("POST /holds: %d %s", res.Status, res.Body)
	}
	var h holdBody
	res.json(ts.t, &h)
	return h
}

// lapse moves a hold's expiry into the past, as if its time had run out.
func (ts *testServer) lapse(id string) {
	ts.t.Helper()
	_, err := ts.db().ExecContext(context.Background(), `UPDATE bookings SET expires_at = now() - interval '1 second' WHERE hold_id = $1`, id)
	if err != nil {
		ts.t.Fatal(err)
	}
}

// expectError checks a response is the contract's error.
func expectError(t *testing.T, what string, res response, status int, code string) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("%s: status %d, want %d (%s)", what, res.Status, status, res.Body)
	}
	if _, got := res.errorBody(t); got != code {
		t.Fatalf("%s: code %q, want %q", what, got, code)
	}
}

func TestHoldLifecycle(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) { c.Batch = batch })
		ev := ts.newEvent(10, true)

		// Take: the tickets leave the stock at once.
		h := ts.mustHold(ev, 3)
		if h.Status != "pending" || h.Quantity != 3 || h.TotalAmount != "76.50" || h.ConfirmedAt != nil || len(h.ID) != 36 || h.EventID != ev {
			t.Fatalf("hold = %+v", h)
		}
		created, _ := time.Parse(time.RFC3339, h.CreatedAt)
		expires, _ := time.Parse(time.RFC3339, h.ExpiresAt)
		if d := expires.Sub(created); d < 9*time.Minute || d > 11*time.Minute {
			t.Fatalf("hold lasts %s, want the 10m default", d)
		}
		if got := ts.available(ev); got != 7 {
			t.Fatalf("stock = %d, want 7", got)
		}
		var got holdBody
		res := ts.do("GET", "/holds/"+h.ID, nil)
		res.json(t, &got)
		if got.Status != "pending" {
			t.Fatalf("GET = %+v", got)
		}
		// A kept copy would read pending after the hold was confirmed or
		// lapsed, and it names the buyer.
		if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("GET's Cache-Control %q, want no-store", cc)
		}

		// Confirm, and again: 200, the same.
		first := ts.do("POST", "/holds/"+h.ID+"/confirm", nil)
		var c holdBody
		first.json(t, &c)
		if first.Status != 200 || c.Status != "confirmed" || c.ConfirmedAt == nil {
			t.Fatalf("confirm: %d %s", first.Status, first.Body)
		}
		res = ts.do("POST", "/holds/"+h.ID+"/confirm", nil)
		if res.Status != 200 || string(res.Body) != string(first.Body) {
			t.Fatalf("confirm again: %d %s, want the same as %s", res.Status, res.Body, first.Body)
		}
		expectError(t, "release a confirmed hold", ts.do("DELETE", "/holds/"+h.ID, nil), 409, "hold_confirmed")

		// Release: the stock comes back; again: 200 as it is; confirm: 409.
		r := ts.mustHold(ev, 2)
		res = ts.do("DELETE", "/holds/"+r.ID, nil)
		res.json(t, &got)
		if res.Status != 200 || got.Status != "released" {
			t.Fatalf("release: %d %s", res.Status, res.Body)
		}
		if got := ts.available(ev); got != 7 {
			t.Fatalf("stock after release = %d, want 7", got)
		}
		res = ts.do("DELETE", "/holds/"+r.ID, nil)
		res.json(t, &got)
		if res.Status != 200 || got.Status != "released" || ts.available(ev) != 7 {
			t.Fatalf("release again: %d %s, stock %d", res.Status, res.Body, ts.available(ev))
		}
		expectError(t, "confirm a released hold", ts.do("POST", "/holds/"+r.ID+"/confirm", nil), 409, "hold_released")

		// Expire: reads expired at once, confirm is 410 and gives the stock
		// back (no sweeper runs in this test), once.
		e := ts.mustHold(ev, 4)
		ts.lapse(e.ID)
		ts.do("GET", "/holds/"+e.ID, nil).json(t, &got)
		if got.Status != "expired" {
			t.Fatalf("lapsed hold reads %q, want expired", got.Status)
		}
		expectError(t, "confirm an expired hold", ts.do("POST", "/holds/"+e.ID+"/confirm", nil), 410, "hold_expired")
		if got := ts.available(ev); got != 7 {
			t.Fatalf("stock after expiry = %d, want 7", got)
		}
		expectError(t, "confirm it again", ts.do("POST", "/holds/"+e.ID+"/confirm", nil), 410, "hold_expired")
		res = ts.do("DELETE", "/holds/"+e.ID, nil)
		res.json(t, &got)
		if res.Status != 200 || got.Status != "expired" || ts.available(ev) != 7 {
			t.Fatalf("release an expired hold: %d %s, stock %d", res.Status, res.Body, ts.available(ev))
		}
		// A lapsed hold released before any sweep turns failed as expired.
		l := ts.mustHold(ev, 1)
		ts.lapse(l.ID)
		res = ts.do("DELETE", "/holds/"+l.ID, nil)
		res.json(t, &got)
		if res.Status != 200 || got.Status != "expired" || ts.available(ev) != 7 {
			t.Fatalf("release a lapsed hold: %d %s, stock %d", res.Status, res.Body, ts.available(ev))
		}
		var reason string
		if err := ts.db().GetContext(t.Context(), &reason, `SELECT failure_reason FROM bookings WHERE hold_id = $1`, r.ID); err != nil || reason != "released" {
			t.Fatalf("failure_reason = %q, %v", reason, err)
		}

		// Sold out, unknown and malformed.
		expectError(t, "sold out", ts.do("POST", "/holds", order(ev, "a@example.com", 8)), 409, "sold_out")
		expectError(t, "no such event", ts.do("POST", "/holds", order(2147483647, "a@example.com", 1)), 404, "not_found")
		expectError(t, "event beyond int4", ts.do("POST", "/holds", order(1<<40, "a@example.com", 1)), 404, "not_found")
		expectError(t, "bad body", ts.do("POST", "/holds", `{"event_id":1}`), 400, "invalid_request")
		for _, method := range []string{"GET", "DELETE"} {
			expectError(t, method+" unknown hold", ts.do(method, "/holds/00000000-0000-4000-8000-000000000000", nil), 404, "not_found")
			expectError(t, method+" malformed hold id", ts.do(method, "/holds/12", nil), 400, "invalid_request")
		}
		expectError(t, "confirm unknown hold", ts.do("POST", "/holds/00000000-0000-4000-8000-000000000000/confirm", nil), 404, "not_found")
		expectError(t, "confirm malformed id", ts.do("POST", "/holds/not-a-uuid/confirm", nil), 400, "invalid_request")
		expectError(t, "wrong method", ts.do("PUT", "/holds/"+h.ID, nil), 405, "method_not_allowed")
		expectError(t, "wrong method on confirm", ts.do("GET", "/holds/"+h.ID+"/confirm", nil), 405, "method_not_allowed")

		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check:\n%s", out)
		}
	})
}

func TestHoldsNeverOversellUnderConcurrency(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) {
			// A long wait, so nobody is told busy; the default TTL, so a
			// lock whose release is lost on a loaded machine lapses soon.
			c.LockWait = 30 * time.Second
			c.Batch = batch
		})
		ev := ts.newEvent(50, true)

		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			counts = map[int]int{}
			ids    []string
			start  = make(chan struct{})
		)
		for i := 0; i < 300; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("b%d@example.com", i), 1))
				mu.Lock()
				defer mu.Unlock()
				counts[res.Status]++
				if res.Status == http.StatusCreated {
					var h holdBody
					if err := json.Unmarshal(res.Body, &h); err != nil {
						t.Errorf("hold body: %v", err)
					}
					ids = append(ids, h.ID)
				} else if res.code() != "sold_out" {
					t.Errorf("status %d: %s", res.Status, res.Body)
				}
			}()
		}
		close(start)
		wg.Wait()
		if counts[201] != 50 || counts[409] != 250 || ts.available(ev) != 0 {
			t.Fatalf("statuses %v, stock %d; want 50 holds, 250 sold out, 0 left", counts, ts.available(ev))
		}

		// Confirm and release them all at once, every hold twice over from two
		// buyers who disagree.
		counts = map[int]int{}
		for i, id := range ids {
			for _, confirmFirst := range []bool{i%2 == 0, i%2 == 1} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var res response
					if confirmFirst {
						res = ts.do("POST", "/holds/"+id+"/confirm", nil)
					} else {
						res = ts.do("DELETE", "/holds/"+id, nil)
					}
					mu.Lock()
					counts[res.Status]++
					mu.Unlock()
					if res.Status >= 500 {
						t.Errorf("%d %s", res.Status, res.Body)
					}
				}()
			}
		}
		wg.Wait()
		var confirmed, released int
		err := ts.db().QueryRowContext(t.Context(), `SELECT
			count(*) FILTER (WHERE booking_status = 'confirmed'),
			count(*) FILTER (WHERE booking_status = 'failed')
			FROM bookings WHERE event_id = $1`, ev).Scan(&confirmed, &released)
		if err != nil {
			t.Fatal(err)
		}
		if confirmed+released != 50 || ts.available(ev) != released {
			t.Fatalf("%d confirmed + %d released, stock %d; want 50 settled and the released back", confirmed, released, ts.available(ev))
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check:\n%s", out)
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) {
			c.Batch = batch
			c.LockWait = 20 * time.Second // twenty duplicates queue for one event
		})
		ev := ts.newEvent(100, true)
		key := func(k string) []string { return []string{"Idempotency-Key", k} }

		// Replay: same key, same values (spelled differently): same answer, one hold.
		first := ts.do("POST", "/holds", order(ev, "a@example.com", 2), key("k1")...)
		again := ts.do("POST", "/holds", fmt.Sprintf(`{ "quantity": 2, "user_email": "a@example.com", "event_id": %d }`, ev), key("k1")...)
		if first.Status != 201 || again.Status != 201 || string(first.Body) != string(again.Body) {
			t.Fatalf("replay: %d %s / %d %s", first.Status, first.Body, again.Status, again.Body)
		}
		if got := ts.available(ev); got != 98 {
			t.Fatalf("stock = %d, want 98 (one hold)", got)
		}
		// Mismatch: same key, other values.
		expectError(t, "mismatch", ts.do("POST", "/holds", order(ev, "a@example.com", 3), key("k1")...), 422, "idempotency_mismatch")
		// The key is scoped to the endpoint: /book/safe may use it afresh.
		if res := ts.do("POST", "/book/safe", order(ev, "a@example.com", 1), key("k1")...); res.Status != 200 {
			t.Fatalf("/book/safe with another endpoint's key: %d %s", res.Status, res.Body)
		}
		b2 := ts.do("POST", "/book/safe", order(ev, "a@example.com", 1), key("k1")...)
		if b2.Status != 200 || ts.available(ev) != 97 {
			t.Fatalf("/book/safe replay: %d %s, stock %d", b2.Status, b2.Body, ts.available(ev))
		}
		expectError(t, "/book/safe mismatch", ts.do("POST", "/book/safe", order(ev, "b@example.com", 1), key("k1")...), 422, "idempotency_mismatch")

		// A 4xx is kept too: sold out stays the answer for that key.
		small := ts.newEvent(1, true)
		expectError(t, "sold out", ts.do("POST", "/holds", order(small, "a@example.com", 2), key("k2")...), 409, "sold_out")
		if _, err := ts.db().ExecContext(t.Context(), `UPDATE events SET total_tickets = 5, available_tickets = 5 WHERE id = $1`, small); err != nil {
			t.Fatal(err)
		}
		expectError(t, "sold out replayed", ts.do("POST", "/holds", order(small, "a@example.com", 2), key("k2")...), 409, "sold_out")
		if ts.available(small) != 5 {
			t.Fatalf("a replayed refusal took stock")
		}

		// Twenty concurrent duplicates make one hold and all get its answer.
		var wg sync.WaitGroup
		bodies := make([]response, 20)
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bodies[i] = ts.do("POST", "/holds", order(ev, "c@example.com", 1), key("k3")...)
			}()
		}
		wg.Wait()
		for i, b := range bodies {
			if b.Status != 201 || string(b.Body) != string(bodies[0].Body) {
				t.Fatalf("duplicate %d: %d %s, want %s", i, b.Status, b.Body, bodies[0].Body)
			}
		}
		var n int
		if err := ts.db().GetContext(t.Context(), &n, `SELECT count(*) FROM bookings WHERE event_id = $1 AND user_email = 'c@example.com'`, ev); err != nil || n != 1 {
			t.Fatalf("%d holds for twenty duplicates (%v), want 1", n, err)
		}

		// Confirm with a key: replayed, and the key belongs to that hold.
		var h holdBody
		first.json(t, &h)
		c1 := ts.do("POST", "/holds/"+h.ID+"/confirm", nil, key("c1")...)
		c2 := ts.do("POST", "/holds/"+h.ID+"/confirm", nil, key("c1")...)
		if c1.Status != 200 || string(c1.Body) != string(c2.Body) || c2.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("confirm replay: %d %s / %d %s", c1.Status, c1.Body, c2.Status, c2.Body)
		}
		expectError(t, "overlong key", ts.do("POST", "/holds", order(ev, "a@example.com", 1), key(strings.Repeat("k", 256))...), 400, "invalid_request")

		if out, ok := ts.check(ev, small); !ok {
			t.Fatalf("check:\n%s", out)
		}
	})
}

func TestSweeperPutsLapsedHoldsBackOnSale(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		c.HoldTTL = 2 * time.Second
		c.SweepEvery = time.Second
	})
	if err := ts.app.sweeper.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer ts.app.sweeper.Stop(context.Background())
	ev := ts.newEvent(10, true)
	for i := 0; i < 5; i++ {
		ts.mustHold(ev, 2)
	}
	// The loop's bound only keeps a broken sweeper from hanging the test;
	// the contract's bound is checked on the database's own timestamps.
	deadline := time.Now().Add(30 * time.Second)
	for ts.available(ev) != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("stock = %d after 30s, want 10", ts.available(ev))
		}
		time.Sleep(100 * time.Millisecond)
	}
	var late int
	err := ts.db().GetContext(t.Context(), &late, `SELECT count(*) FROM bookings
		WHERE event_id = $1 AND (booking_status <> 'failed' OR failure_reason <> 'expired'
		                         OR updated_at > expires_at + interval '1 second' + interval '1 second')`, ev)
	if err != nil || late > 0 {
		t.Fatalf("%d holds not swept within an interval + 1s of their expiry (%v)", late, err)
	}
	// The sweeper reports its counts when its run ends, a moment after its
	// last commit.
	for m := ts.scrape(); m["holdfast_holds_expired_total"] != 5 || m["holdfast_sweeper_runs_total"] < 1; m = ts.scrape() {
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %v expired, %v sweeper runs; want 5 and at least 1",
				m["holdfast_holds_expired_total"], m["holdfast_sweeper_runs_total"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(ts.log.String(), "swept lapsed holds") {
		t.Fatalf("the sweeper did not log its work:\n%s", ts.log.String())
	}
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check:\n%s", out)
	}
}

func TestCheckCoversHolds(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	stale := ts.newEvent(10, true)
	h := ts.mustHold(stale, 1)
	if _, err := ts.db().ExecContext(t.Context(), `UPDATE bookings SET expires_at = now() - interval '1 minute' WHERE hold_id = $1`, h.ID); err != nil {
		t.Fatal(err)
	}
	out, ok := ts.check(stale)
	if ok || !strings.Contains(out, "past expiry") {
		t.Fatalf("check passed a hold left pending a minute past expiry:\n%s", out)
	}

	late := ts.newEvent(10, true)
	c := ts.mustHold(late, 1)
	ts.do("POST", "/holds/"+c.ID+"/confirm", nil)
	if _, err := ts.db().ExecContext(t.Context(), `UPDATE bookings SET expires_at = confirmed_at - interval '1 second' WHERE hold_id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	out, ok = ts.check(late)
	if ok || !strings.Contains(out, "confirmed after their hold expired") {
		t.Fatalf("check passed a booking confirmed after expiry:\n%s", out)
	}
	if out, ok := ts.check(999999); ok || !strings.Contains(out, "no such event") {
		t.Fatalf("check passed an unknown event:\n%s", out)
	}
}

// forBothPaths runs f as two parallel subtests: holds served in batches, and
// one transaction per hold.
func forBothPaths(t *testing.T, f func(t *testing.T, batch bool)) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			t.Parallel()
			f(t, batch)
		})
	}
}

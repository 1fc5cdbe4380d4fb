package main

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads /metrics into name{labels} -> value.
func (ts *testServer) scrape() map[string]float64 {
	ts.t.Helper()
	res := ts.do("GET", "/metrics", nil)
	if res.Status != 200 {
		ts.t.Fatalf("/metrics: %d", res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(res.Body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			ts.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) { c.Batch = batch })
		ev := ts.newEvent(5, true)

		a, b, c := ts.mustHold(ev, 1), ts.mustHold(ev, 1), ts.mustHold(ev, 1)
		ts.do("POST", "/holds/"+a.ID+"/confirm", nil)
		ts.do("POST", "/holds/"+a.ID+"/confirm", nil) // again: not a second confirmation
		ts.do("DELETE", "/holds/"+b.ID, nil)
		ts.lapse(c.ID)
		ts.do("POST", "/holds/"+c.ID+"/confirm", nil) // 410, and expired
		ts.do("POST", "/holds", order(ev, "x@example.com", 9))
		ts.do("POST", "/book/safe", order(ev, "y@example.com", 1))
		ts.do("POST", "/book/safe", order(ev, "y@example.com", 9))

		m := ts.scrape()
		want := map[string]float64{
			"holdfast_holds_created_total":                                                                         3,
			"holdfast_holds_confirmed_total":                                                                       1,
			"holdfast_holds_released_total":                                                                        1,
			"holdfast_holds_expired_total":                                                                         1,
			`holdfast_bookings_total{endpoint="/holds",outcome="held"}`:                                            3,
			`holdfast_bookings_total{endpoint="/holds",outcome="sold_out"}`:                                        1,
			`holdfast_bookings_total{endpoint="/book/safe",outcome="booked"}`:                                      1,
			`holdfast_bookings_total{endpoint="/book/safe",outcome="sold_out"}`:                                    1,
			`holdfast_http_request_duration_seconds_count{method="DELETE",route="/holds/{id}",status="200"}`:       1,
			`holdfast_http_request_duration_seconds_count{method="POST",route="/holds/{id}/confirm",status="410"}`: 1,
			"holdfast_redis_up": 1,
		}
		for name, v := range want {
			if got, ok := m[name]; !ok || got != v {
				t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
			}
		}
		for _, name := range []string{"holdfast_lock_wait_seconds_count", "holdfast_db_connections_in_use",
			"holdfast_sweeper_lag_seconds", "holdfast_sweeper_runs_total", "holdfast_lock_timeouts_total"} {
			if _, ok := m[name]; !ok {
				t.Errorf("%s is missing", name)
			}
		}
		if m["holdfast_lock_wait_seconds_count"] < 1 {
			t.Errorf("no lock waits recorded")
		}
		if batch && m["holdfast_hold_batch_size_count"] < 1 {
			t.Errorf("no batches recorded")
		}
		if t.Failed() {
			t.Log(fmt.Sprint(m))
		}
	})
}

// holdfast_lock_timeouts_total counts requests answered busy, once each:
// a batch worker's own waits for the lock on their behalf used to count
// too. Replays and rate-limited requests are counted under their outcome.
// Another instance selling holds the Redis lock and, in its transaction,
// the event's row: the unbatched path waits for the first, the batcher's
// lone request for the second (it takes no Redis lock).
func TestMetricsCountEachBusyAnswerOnce(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) {
			c.Batch = batch
			c.LockWait = 150 * time.Millisecond
		})
		ev := ts.newEvent(5, true)
		unlock, err := ts.app.locks.Lock(t.Context(), ev) // another instance is selling
		if err != nil {
			t.Fatal(err)
		}
		tx, err := ts.db().BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(t.Context(), `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
			t.Fatal(err)
		}
		busy := 0
		for i := 0; i < 3; i++ {
			if res := ts.do("POST", "/holds", order(ev, "a@example.com", 1)); res.Status == 429 {
				busy++
			}
		}
		unlock()
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if busy != 3 {
			t.Fatalf("%d of 3 answered busy", busy)
		}
		// A replayed refusal counts as what it was.
		for i := 0; i < 2; i++ {
			ts.do("POST", "/holds", order(ev, "a@example.com", 6), "Idempotency-Key", "k")
		}
		m := ts.scrape()
		if got := m["holdfast_lock_timeouts_total"]; got != 3 {
			t.Errorf("lock timeouts = %v, want 3 (one per busy answer)", got)
		}
		if got := m[`holdfast_bookings_total{endpoint="/holds",outcome="busy"}`]; got != 3 {
			t.Errorf("busy outcomes = %v, want 3", got)
		}
		if got := m[`holdfast_bookings_total{endpoint="/holds",outcome="sold_out"}`]; got != 2 {
			t.Errorf("sold_out outcomes = %v, want 2 (the first and its replay)", got)
		}
	})
}

func TestMetricsKnowARateLimitedRequestByItsRoute(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.RateLimit = 1 })
	ev := ts.newEvent(100, true)
	limited := 0
	for i := 0; i < 5; i++ {
		if ts.do("POST", "/holds", order(ev, fmt.Sprintf("r%d@example.com", i), 1)).Status == 429 {
			limited++
		}
	}
	m := ts.scrape()
	if limited == 0 || m[`holdfast_bookings_total{endpoint="/holds",outcome="busy"}`] != float64(limited) {
		t.Fatalf("%d limited, metrics say %v", limited, m[`holdfast_bookings_total{endpoint="/holds",outcome="busy"}`])
	}
}

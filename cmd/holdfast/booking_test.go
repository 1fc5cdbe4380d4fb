package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// buyers sends n concurrent single-ticket requests to path for eventID, all
// released at once, and counts the statuses.
func (ts *testServer) buyers(n int, path string, eventID int64) map[int]int {
	ts.t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
		start  = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"event_id":%d,"user_email":"buyer%d@example.com","quantity":1}`, eventID, i)
			res := ts.do(http.MethodPost, path, body)
			if res.Status != http.StatusOK && !bytes.Contains(res.Body, []byte(`"code":`)) {
				ts.t.Errorf("status %d without the JSON error body: %s", res.Status, res.Body)
			}
			mu.Lock()
			counts[res.Status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

func TestBookUnsafeOversells(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		// The seed's 100ms, tripled: on a busy two-core machine the 50
		// buyers need time to all read the stock before the first insert.
		c.SimulateWork = 300 * time.Millisecond
		c.DBMaxConns = 60 // enough for every buyer to read the stock at once
	})
	ev := ts.newEvent(10, false)

	counts := ts.buyers(50, "/book/unsafe", ev)

	if counts[http.StatusOK] <= 10 {
		t.Fatalf("unsafe sold %d of 10 tickets to 50 racing buyers; the demonstration needs it to oversell (statuses %v)", counts[http.StatusOK], counts)
	}
	if got, want := ts.available(ev), 10-counts[http.StatusOK]; got != want || got >= 0 {
		t.Fatalf("stock = %d, want %d (below zero)", got, want)
	}
	out, ok := ts.check(ev)
	if ok || !strings.Contains(out, "oversold by") {
		t.Fatalf("check passed an oversold event:\n%s", out)
	}
}

func TestBookUnsafeCannotOversellAGuardedEvent(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		c.SimulateWork = 50 * time.Millisecond
		c.DBMaxConns = 60
	})
	ev := ts.newEvent(10, true)

	counts := ts.buyers(40, "/book/unsafe", ev)

	if counts[http.StatusOK] > 10 || ts.available(ev) < 0 {
		t.Fatalf("guarded event oversold: statuses %v, stock %d", counts, ts.available(ev))
	}
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check failed:\n%s", out)
	}
}

func TestBookUnsafeIsNotMountedByDefault(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.UnsafeDemo = false })
	ev := ts.newEvent(10, false)
	res := ts.do(http.MethodPost, "/book/unsafe", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1}`, ev))
	if res.Status != http.StatusNotFound {
		t.Fatalf("status = %d, want 404", res.Status)
	}
	if _, code := res.errorBody(t); code != "not_found" {
		t.Fatalf("code = %q, want not_found", code)
	}
}

func TestBookSafeSellsExactlyTheStock(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(c *config) {
		// Long enough that nobody is turned away busy, on a machine
		// running every package's tests at once (the 200 bookings take
		// their turns one after another): this test is about never
		// overselling, not about the lock's wait.
		c.LockWait = 45 * time.Second
		c.DBMaxConns = 40
	}, func(t *testing.T, ts *testServer, redisUp bool) {
		ev := ts.newEvent(10, true)

		counts := ts.buyers(200, "/book/safe", ev)

		if counts[http.StatusOK] != 10 || counts[http.StatusBadRequest] != 190 {
			t.Fatalf("statuses %v, want 10 x 200 and 190 x 400 sold_out", counts)
		}
		if got := ts.available(ev); got != 0 {
			t.Fatalf("stock = %d, want 0", got)
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check failed:\n%s", out)
		}
		var ready struct{ Status, Postgres, Redis string }
		ts.do(http.MethodGet, "/ready", nil).json(t, &ready)
		want := "ok"
		if !redisUp {
			want = "degraded"
		}
		if ready.Status != want || ready.Postgres != "ok" {
			t.Fatalf("/ready = %+v, want status %s", ready, want)
		}
		if !redisUp && !strings.Contains(ts.log.String(), "redis unavailable") {
			t.Fatalf("the log does not say Redis is down:\n%s", ts.log.String())
		}
	})
}

func TestBookSafeAnswersBusyWhenTheLockIsHeld(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.LockWait = 50 * time.Millisecond })
	ev := ts.newEvent(10, true)

	unlock, err := ts.app.locks.Lock(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	res := ts.do(http.MethodPost, "/book/safe", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1}`, ev))
	if res.Status != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 429 with Retry-After", res.Status, res.Header.Get("Retry-After"))
	}
	if _, code := res.errorBody(t); code != "busy" {
		t.Fatalf("code = %q, want busy", code)
	}
	if got := ts.available(ev); got != 10 {
		t.Fatalf("stock = %d, want 10 untouched", got)
	}
}

func TestBookSafeAnswersBusyOnTheRowLockWithoutRedis(t *testing.T) {
	t.Parallel()
	redis := testenvPrivateRedis(t)
	ts := newTestServer(t, func(c *config) {
		c.RedisURL = redis.URL()
		c.LockWait = 100 * time.Millisecond
	})
	if err := redis.Stop(); err != nil {
		t.Fatal(err)
	}
	ev := ts.newEvent(10, true)

	// Another session holds the event row: without Redis, the request
	// waits on PostgreSQL's lock_timeout and is told busy.
	tx, err := ts.db().BeginTxx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(t.Context(), `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
		t.Fatal(err)
	}
	res := ts.do(http.MethodPost, "/book/safe", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1}`, ev))
	if res.Status != http.StatusTooManyRequests {
		t.Fatalf("status %d (%s), want 429", res.Status, res.Body)
	}
}

package main

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestTicketCapPerBuyer(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) {
			c.Batch = batch
			c.TicketCap = 6
			c.LockWait = 20 * time.Second // the crowd below must not be told busy
		})
		ev := ts.newEvent(100, true)
		other := ts.newEvent(100, true)

		h := ts.do("POST", "/holds", order(ev, "Ada@Example.com", 4))
		if h.Status != 201 {
			t.Fatalf("first hold: %d %s", h.Status, h.Body)
		}
		// Emails are compared case-folded: 4 + 3 is over 6.
		expectError(t, "over the cap", ts.do("POST", "/holds", order(ev, "ada@example.COM", 3)), 409, "limit_exceeded")
		expectError(t, "over the cap on /book/safe", ts.do("POST", "/book/safe", order(ev, "ADA@example.com", 3)), 409, "limit_exceeded")
		if res := ts.do("POST", "/book/safe", order(ev, "ada@example.com", 2)); res.Status != 200 {
			t.Fatalf("up to the cap: %d %s", res.Status, res.Body)
		}
		// Another event has its own cap.
		if res := ts.do("POST", "/holds", order(other, "ada@example.com", 6)); res.Status != 201 {
			t.Fatalf("another event: %d %s", res.Status, res.Body)
		}
		// A released hold no longer counts.
		var first holdBody
		h.json(t, &first)
		ts.do("DELETE", "/holds/"+first.ID, nil)
		if res := ts.do("POST", "/holds", order(ev, "ada@example.com", 4)); res.Status != 201 {
			t.Fatalf("after a release: %d %s", res.Status, res.Body)
		}
		if got := ts.available(ev); got != 94 {
			t.Fatalf("stock = %d, want 94", got)
		}

		// A crowd of one buyer at once: the cap holds exactly.
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		crowd := ts.newEvent(100, true)
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := ts.do("POST", "/holds", order(crowd, []string{"same@example.com", "SAME@example.com"}[i%2], 1))
				if res.Status == 201 {
					mu.Lock()
					won++
					mu.Unlock()
				} else if res.code() != "limit_exceeded" {
					t.Errorf("status %d: %s", res.Status, res.Body)
				}
			}()
		}
		wg.Wait()
		if won != 6 || ts.available(crowd) != 94 {
			t.Fatalf("one buyer won %d tickets (stock %d), want exactly the cap of 6", won, ts.available(crowd))
		}
		if out, ok := ts.check(ev, other, crowd); !ok {
			t.Fatalf("check:\n%s", out)
		}
	})
}

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(c *config) { c.RateLimit = 5 }, func(t *testing.T, ts *testServer, _ bool) {
		ev := ts.newEvent(100, true)
		// Twenty writes at once from one address: whatever second
		// they land in, at most 5 per second pass.
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		start := time.Now()
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("r%d@example.com", i), 1))
				mu.Lock()
				statuses[res.Status]++
				mu.Unlock()
				if res.Status == 429 {
					if res.code() != "busy" || res.Header.Get("Retry-After") == "" {
						t.Errorf("429 without busy and Retry-After: %s", res.Body)
					}
				}
			}()
		}
		wg.Wait()
		seconds := int(time.Since(start)/time.Second) + 2 // the burst may straddle second boundaries
		if statuses[201] > 5*seconds || statuses[429] == 0 {
			t.Fatalf("statuses %v over at most %d windows: the limit of 5/s did not hold", statuses, seconds)
		}
		// Reads are not limited.
		for i := 0; i < 10; i++ {
			if res := ts.do("GET", fmt.Sprintf("/events/%d", ev), nil); res.Status != 200 {
				t.Fatalf("GET limited: %d", res.Status)
			}
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check:\n%s", out)
		}
	})
}

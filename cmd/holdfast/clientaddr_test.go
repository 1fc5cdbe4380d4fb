package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// One address with made-up emails emptied an event. The per-client cap
// counts the address whatever the emails, and the address is the peer's:
// an X-Forwarded-For from a peer that is not a trusted proxy is ignored,
// so a client cannot spread itself over made-up addresses.
func TestTheClientCapIgnoresForwardedForFromAnUntrustedPeer(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) { c.Batch, c.ClientCap = batch, 3 })
		ev := ts.newEvent(100, true)
		for i := 0; i < 3; i++ {
			res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("u%d@example.com", i), 1), "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
			if res.Status != 201 {
				t.Fatalf("hold %d: %d %s", i, res.Status, res.Body)
			}
		}
		expectError(t, "a fourth ticket under another made-up address",
			ts.do("POST", "/holds", order(ev, "u9@example.com", 1), "X-Forwarded-For", "198.51.100.9"), 409, "limit_exceeded")
		expectError(t, "a booking over the address's holds",
			ts.do("POST", "/book/safe", order(ev, "u9@example.com", 1), "X-Forwarded-For", "198.51.100.9"), 409, "limit_exceeded")
		var addrs []string
		if err := ts.db().SelectContext(context.Background(), &addrs, `SELECT DISTINCT host(client_addr) FROM bookings WHERE event_id = $1`, ev); err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 || addrs[0] != "127.0.0.1" {
			t.Fatalf("client addresses stored: %v, want the peer's alone", addrs)
		}
	})
}

// Behind a trusted proxy the client address is the right-most untrusted
// entry of X-Forwarded-For: the cap counts per address so resolved, and
// what a client writes to the left of it changes nothing.
func TestATrustedProxyNamesTheClient(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.ClientCap, c.TrustedProxies = 3, "127.0.0.0/8,10.0.0.0/8" })
	ev := ts.newEvent(100, true)
	xff := func(v string) []string { return []string{"X-Forwarded-For", v} }
	if res := ts.do("POST", "/holds", order(ev, "a@example.com", 3), xff("198.51.100.1")...); res.Status != 201 {
		t.Fatalf("first client: %d %s", res.Status, res.Body)
	}
	expectError(t, "the same client again, with a made-up hop to its left and a trusted one to its right",
		ts.do("POST", "/holds", order(ev, "b@example.com", 1), xff("6.6.6.6, 198.51.100.1, 10.0.0.7")...), 409, "limit_exceeded")
	if res := ts.do("POST", "/holds", order(ev, "b@example.com", 3), xff("198.51.100.2")...); res.Status != 201 {
		t.Fatalf("another client behind the proxy: %d %s", res.Status, res.Body)
	}
	if res := ts.do("POST", "/holds", order(ev, "c@example.com", 3)); res.Status != 201 {
		t.Fatalf("the proxy itself, without the header: %d %s", res.Status, res.Body)
	}
	var n int
	err := ts.db().GetContext(context.Background(), &n, `SELECT count(*) FROM bookings WHERE event_id = $1 AND client_addr = '198.51.100.1'`, ev)
	if err != nil || n != 1 {
		t.Fatalf("bookings of 198.51.100.1: %d, %v; want 1", n, err)
	}
}

// The rate limit counts the same resolved address: clients behind a trusted
// proxy each have their own allowance, and one client's is not reset by a
// made-up hop.
func TestTheRateLimitCountsTheResolvedAddress(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.RateLimit, c.TrustedProxies = 2, "127.0.0.1" })
	ev := ts.newEvent(100, true)
	for i := 0; i < 6; i++ {
		res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("d%d@example.com", i), 1), "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		if res.Status != 201 {
			t.Fatalf("client %d, its first write: %d %s", i, res.Status, res.Body)
		}
	}
	limited := 0
	for i := 0; i < 6; i++ {
		res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("e%d@example.com", i), 1), "X-Forwarded-For", fmt.Sprintf("%d.6.6.6, 203.0.113.1", i))
		if res.Status == 429 {
			limited++
		}
	}
	// Six writes over at most three one-second windows at 2 a second.
	if limited == 0 {
		t.Fatal("one client behind the proxy sent 6 writes with made-up hops and none was limited")
	}
}

// An IPv6 host or home is given a /64 and picks the low 64 bits of its
// addresses freely, so the per-client cap and the rate limit count an IPv6
// client by its /64: counted whole, one client with a new address per
// request had a cap and a rate of its own for each.
func TestAnIPv6ClientIsCountedByItsSlash64(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.ClientCap, c.TrustedProxies = 3, "127.0.0.1" })
	ev := ts.newEvent(100, true)
	for i := 1; i <= 3; i++ {
		if res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("v%d@example.com", i), 1), "X-Forwarded-For", fmt.Sprintf("2001:db8:1:2::%x", i)); res.Status != 201 {
			t.Fatalf("hold %d: %d %s", i, res.Status, res.Body)
		}
	}
	expectError(t, "a fourth ticket from another address of the same /64",
		ts.do("POST", "/holds", order(ev, "v9@example.com", 1), "X-Forwarded-For", "2001:db8:1:2:dead:beef:0:1"), 409, "limit_exceeded")
	if res := ts.do("POST", "/holds", order(ev, "w@example.com", 3), "X-Forwarded-For", "2001:db8:1:3::1"); res.Status != 201 {
		t.Fatalf("the next /64: %d %s", res.Status, res.Body)
	}
	var addrs []string
	if err := ts.db().SelectContext(context.Background(), &addrs, `SELECT DISTINCT host(client_addr) FROM bookings WHERE event_id = $1 ORDER BY 1`, ev); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(addrs) != "[2001:db8:1:2:: 2001:db8:1:3::]" {
		t.Fatalf("client addresses stored: %v, want the two /64s", addrs)
	}

	limited := newTestServer(t, func(c *config) { c.RateLimit, c.TrustedProxies = 2, "127.0.0.1" })
	ev = limited.newEvent(100, true)
	refused := 0
	for i := 1; i <= 6; i++ {
		res := limited.do("POST", "/holds", order(ev, fmt.Sprintf("r%d@example.com", i), 1), "X-Forwarded-For", fmt.Sprintf("2001:db8:9:9::%x", i))
		if res.Status == 429 {
			refused++
		}
	}
	// Six writes over at most three one-second windows at 2 a second.
	if refused == 0 {
		t.Fatal("one /64 sent 6 writes from 6 addresses and none was limited")
	}
}

// The email rules at the edge: stored in NFC, 400 for a format character
// or invalid UTF-8, on both write endpoints.
func TestEmailsAtTheEdge(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(100, true)
	var h holdBody
	res := ts.do("POST", "/holds", order(ev, "e\u0301@example.com", 1))
	if res.Status != 201 {
		t.Fatalf("NFD email: %d %s", res.Status, res.Body)
	}
	if res.json(t, &h); h.UserEmail != "\u00e9@example.com" {
		t.Fatalf("NFD email answered as %q, want NFC", h.UserEmail)
	}
	for _, path := range []string{"/holds", "/book/safe"} {
		expectError(t, path+" zero-width space", ts.do("POST", path, order(ev, "a\u200b@example.com", 1)), 400, "invalid_request")
		expectError(t, path+" invalid UTF-8", ts.do("POST", path, []byte(fmt.Sprintf("{\"event_id\":%d,\"user_email\":\"a\xff@example.com\",\"quantity\":1}", ev))), 400, "invalid_request")
	}
}

// A crowd from two addresses behind a trusted proxy, each with a new email
// per request, all at once: each address gets exactly its cap, with Redis
// up and with it down (the row lock alone).
func TestTheClientCapHoldsUnderACrowd(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(c *config) {
		c.ClientCap, c.TrustedProxies = 7, "127.0.0.1"
		c.LockWait = 20 * time.Second // the crowd below must not be told busy
	}, func(t *testing.T, ts *testServer, _ bool) {
		ev := ts.newEvent(100, true)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := map[string]int{}
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				addr := []string{"198.51.100.1", "198.51.100.2"}[i%2]
				res := ts.do("POST", "/holds", order(ev, fmt.Sprintf("crowd%d@example.com", i), 1), "X-Forwarded-For", addr)
				switch {
				case res.Status == 201:
					mu.Lock()
					won[addr]++
					mu.Unlock()
				case res.code() != "limit_exceeded":
					t.Errorf("status %d: %s", res.Status, res.Body)
				}
			}()
		}
		wg.Wait()
		if won["198.51.100.1"] != 7 || won["198.51.100.2"] != 7 || ts.available(ev) != 86 {
			t.Fatalf("won %v (stock %d), want exactly 7 per address", won, ts.available(ev))
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check:\n%s", out)
		}
	})
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
)

// withTwoInstancesRedisUpAndDown runs f as two parallel subtests, each with
// two servers on one database and one Redis of their own, as two instances
// behind a balancer: Redis up in one, stopped after the servers started in
// the other, where only PostgreSQL's row lock keeps the instances apart.
func withTwoInstancesRedisUpAndDown(t *testing.T, edit func(*config), f func(t *testing.T, ts [2]*testServer)) {
	t.Parallel()
	for _, redisUp := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_up=%v", redisUp), func(t *testing.T) {
			t.Parallel()
			redis := testenv.PrivateRedis(t)
			dbURL := testenv.DatabaseURL(t)
			var ts [2]*testServer
			for i := range ts {
				ts[i] = newTestServer(t, func(c *config) {
					// One prefix: each server of newTestServer has its
					// own, and their locks would never meet.
					c.DatabaseURL, c.RedisURL, c.RedisPrefix = dbURL, redis.URL(), "rowlock:"
					// Long enough that nobody is told busy: these tests
					// are about the stock and the cap.
					c.LockWait = 20 * time.Second
					c.DBMaxConns = 16
					if edit != nil {
						edit(c)
					}
				})
			}
			if !redisUp {
				if err := redis.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			f(t, ts)
		})
	}
}

// rush sends n single-ticket requests to path for ev, alternating between
// the two servers, all released at once, the i-th by buyer(i) and, when
// keyed, with an Idempotency-Key of its own. It returns the count of each
// answer: "ok" for a 2xx, else the error code.
func rush(t *testing.T, ts [2]*testServer, path string, ev int64, n int, keyed bool, buyer func(i int) string) map[string]int {
	t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[string]int{}
		start  = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"event_id":%d,"user_email":%q,"quantity":1}`, ev, buyer(i))
			var header []string
			if keyed {
				header = []string{"Content-Type", "application/json", "Idempotency-Key", fmt.Sprintf("rush-%d-%d", ev, i)}
			} else {
				header = []string{"Content-Type", "application/json"}
			}
			res := ts[i%2].do(http.MethodPost, path, body, header...)
			what := res.code()
			if res.Status/100 == 2 {
				what = "ok"
			}
			mu.Lock()
			counts[what]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

// sellPaths are the three ways to take tickets: a hold through the batch of
// one call (no key), a hold through the batch's transaction (a key), and
// /book/safe.
var sellPaths = []struct {
	name, path string
	keyed      bool
}{{"holds", "/holds", false}, {"holds_with_keys", "/holds", true}, {"book_safe", "/book/safe", false}}

// liveTickets is what buyers hold or own of ev, by folded email.
func liveTickets(t *testing.T, ts *testServer, ev int64) (total int, byBuyer map[string]int) {
	t.Helper()
	rows, err := ts.db().QueryContext(context.Background(), `SELECT lower(user_email), sum(quantity) FROM bookings
		WHERE event_id = $1 AND booking_status IN ('pending', 'confirmed') GROUP BY 1`, ev)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	byBuyer = map[string]int{}
	for rows.Next() {
		var b string
		var n int
		if err := rows.Scan(&b, &n); err != nil {
			t.Fatal(err)
		}
		byBuyer[b], total = n, total+n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return total, byBuyer
}

// Two instances sell an event without the oversell guard, more demand
// than stock, on every path: exactly the stock is sold, with Redis up and
// with Redis stopped (the row lock alone).
func TestTwoInstancesSellExactlyTheStock(t *testing.T) {
	withTwoInstancesRedisUpAndDown(t, func(c *config) { c.TicketCap = 0 }, func(t *testing.T, ts [2]*testServer) {
		for _, p := range sellPaths {
			ev := ts[0].newEvent(20, false)
			counts := rush(t, ts, p.path, ev, 60, p.keyed, func(i int) string { return fmt.Sprintf("buyer%d@example.com", i) })
			if counts["ok"] != 20 || counts["sold_out"] != 40 {
				t.Errorf("%s: answers %v, want 20 ok and 40 sold_out", p.name, counts)
			}
			live, _ := liveTickets(t, ts[0], ev)
			if got := ts[0].available(ev); got != 0 || live != 20 {
				t.Errorf("%s: %d available and %d in live bookings of 20", p.name, got, live)
			}
			if out, ok := ts[0].check(ev); !ok {
				t.Errorf("%s: check failed:\n%s", p.name, out)
			}
		}
	})
}

// Two instances serve the same few buyers, under two spellings each, far
// beyond the cap, on every path: every buyer ends with exactly the cap,
// with Redis up and with Redis stopped (the row lock alone).
func TestTwoInstancesKeepTheCap(t *testing.T) {
	const ticketCap, requests = 3, 64
	buyers := []string{"ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"}
	withTwoInstancesRedisUpAndDown(t, func(c *config) { c.TicketCap = ticketCap }, func(t *testing.T, ts [2]*testServer) {
		for _, p := range sellPaths {
			ev := ts[0].newEvent(1000, true)
			counts := rush(t, ts, p.path, ev, requests, p.keyed, func(i int) string {
				b := buyers[(i/2)%len(buyers)]
				if i%4 >= 2 {
					b = strings.ToUpper(b[:1]) + b[1:]
				}
				return b
			})
			if counts["ok"] != ticketCap*len(buyers) || counts["limit_exceeded"] != requests-ticketCap*len(buyers) {
				t.Errorf("%s: answers %v, want %d ok and the rest limit_exceeded", p.name, counts, ticketCap*len(buyers))
			}
			_, owned := liveTickets(t, ts[0], ev)
			for _, b := range buyers {
				if owned[b] != ticketCap {
					t.Errorf("%s: %s owns %d tickets, want the cap, %d", p.name, b, owned[b], ticketCap)
				}
			}
		}
	})
}

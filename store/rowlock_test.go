package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// The tests here are of the event row lock alone: with Redis stopped no
// instance has the Redis lock, and two instances, each with its own pool,
// sell one event at once. Only the row lock (`FOR UPDATE` on the event row,
// in hold_batch and in qStockLocked) keeps the stock and the per-buyer cap
// exact then. Each test runs again with Redis up, as the service runs
// normally. Removing either `FOR UPDATE` makes the Redis-down variants
// fail (see the commit that added them).

// instance is one holdfast process as far as selling goes: a store on a
// pool of its own, and its Redis locks.
type instance struct {
	store *store.Store
	locks *store.Locks
}

// lock takes ev's Redis lock as the service does before it sells (with
// Redis down, a no-op) and returns its unlock.
func (in instance) lock(t *testing.T, ev int64) func() {
	unlock, err := in.locks.Lock(context.Background(), ev)
	if err != nil {
		t.Errorf("lock: %v", err)
		return func() {}
	}
	return unlock
}

// forRedisUpAndDown runs test as two parallel subtests, each with two
// instances on one new database and on a Redis of their own: up in one,
// stopped in the other. Every instance has the given cap.
func forRedisUpAndDown(t *testing.T, ticketCap int, test func(t *testing.T, ins [2]instance)) {
	t.Parallel()
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_up=%v", up), func(t *testing.T) {
			t.Parallel()
			dbURL := testenv.DatabaseURL(t)
			r := testenv.PrivateRedis(t)
			var ins [2]instance
			for i := range ins {
				db, err := store.Open(context.Background(), dbURL, store.DBOptions{
					MaxConns: 8, LockTimeout: 20 * time.Second, StatementTimeout: 30 * time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				rdb, err := store.OpenRedis(r.URL())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rdb.Close() })
				s := store.New(db)
				s.SetTicketCap(ticketCap)
				ins[i] = instance{store: s, locks: store.NewLocks(rdb, store.LockOptions{
					Prefix: "rowlock:", TTL: 10 * time.Second, Wait: 20 * time.Second,
				}, slog.New(slog.NewTextHandler(io.Discard, nil)))}
			}
			if !up {
				if err := r.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			test(t, ins)
			if !up && ins[0].locks.RedisUp() {
				t.Fatal("the locks say Redis is up while it is stopped")
			}
		})
	}
}

// unguardedEvent makes an event without the oversell guard: the database's
// check on the stock is off, and only the row lock stands between the
// buyers and an oversold event.
func unguardedEvent(t *testing.T, s *store.Store, tickets int) int64 {
	t.Helper()
	var id int64
	err := s.DB().QueryRowContext(context.Background(), `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price, oversell_guard)
		VALUES ('row lock', now() + interval '1 day', $1, $1, 10, false) RETURNING id`, tickets).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// sold is what the database holds of an event after a test's buyers.
type sold struct {
	total, available, live int
	overCap                map[string]int // folded buyer -> live tickets, for buyers above the cap
	owned                  map[string]int // folded buyer -> live tickets
}

func readSale(t *testing.T, s *store.Store, ev int64, ticketCap int) sold {
	t.Helper()
	ctx := context.Background()
	var sl sold
	if err := s.DB().QueryRowContext(ctx, `SELECT total_tickets, available_tickets FROM events WHERE id = $1`, ev).Scan(&sl.total, &sl.available); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DB().QueryContext(ctx, `SELECT lower(user_email), sum(quantity) FROM bookings
		WHERE event_id = $1 AND booking_status IN ('pending', 'confirmed') GROUP BY 1`, ev)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sl.overCap, sl.owned = map[string]int{}, map[string]int{}
	for rows.Next() {
		var buyer string
		var n int
		if err := rows.Scan(&buyer, &n); err != nil {
			t.Fatal(err)
		}
		sl.live += n
		sl.owned[buyer] = n
		if ticketCap > 0 && n > ticketCap {
			sl.overCap[buyer] = n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sl
}

// checkStock fails t unless the event sold exactly its stock: nothing
// below zero, and every ticket either available or in a live booking.
func checkStock(t *testing.T, sl sold) {
	t.Helper()
	if sl.available != 0 || sl.live != sl.total || sl.available+sl.live != sl.total {
		t.Fatalf("after demand beyond the stock: %d available and %d in live bookings of %d; want 0 and %d",
			sl.available, sl.live, sl.total, sl.total)
	}
}

// checkCap fails t unless every buyer ended with exactly the cap: each
// asked for more.
func checkCap(t *testing.T, sl sold, buyers []string, ticketCap int) {
	t.Helper()
	if len(sl.overCap) > 0 {
		t.Fatalf("buyers above the cap of %d: %v", ticketCap, sl.overCap)
	}
	for _, b := range buyers {
		if got := sl.owned[b]; got != ticketCap {
			t.Errorf("%s owns %d tickets, want the cap, %d", b, got, ticketCap)
		}
	}
	if sl.available+sl.live != sl.total {
		t.Fatalf("%d available and %d in live bookings of %d", sl.available, sl.live, sl.total)
	}
}

// hammer runs work(instance, goroutine, round) from perInstance goroutines
// on each instance, rounds times each, all released at once, and fails t
// if that takes more than a bound.
func hammer(t *testing.T, ins [2]instance, perInstance, rounds int, work func(in instance, g, round int)) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, in := range ins {
		for g := 0; g < perInstance; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for r := 0; r < rounds; r++ {
					work(in, i*perInstance+g, r)
				}
			}()
		}
	}
	began := time.Now()
	close(start)
	wg.Wait()
	if took := time.Since(began); took > 20*time.Second {
		t.Fatalf("the sale took %s", took.Round(time.Millisecond))
	}
}

// batchPaths are the two ways a batch of holds is served: one call of
// hold_batch (no idempotency keys) and the transaction of several
// statements (a key on every request).
var batchPaths = []struct {
	name string
	keys bool
}{{"hold_batch", false}, {"transaction", true}}

// holdRequest is a request for qty tickets of ev by email, with a key of
// its own when keyed.
func holdRequest(ev int64, email string, qty int, keyed bool, id string) hold.Request {
	req := hold.Request{Order: sale.Order{EventID: ev, Email: email, Quantity: qty}}
	if keyed {
		sum := sha256.Sum256([]byte(id))
		req.Key = &idempotency.Key{Scope: hold.ScopeCreate, Key: id, Hash: sum[:]}
	}
	return req
}

func renderHold(_ hold.Hold, err error) idempotency.Response {
	if err != nil {
		return idempotency.Response{Status: http.StatusConflict, Body: []byte(`{}`)}
	}
	return idempotency.Response{Status: http.StatusCreated, Body: []byte(`{}`)}
}

// sellBatches has both instances send batches of holds for ev at once,
// from many goroutines, each batch of perBatch requests by buyers chosen
// by buyer(g, round, i), one ticket each. Every outcome must be a hold or
// one of allowed.
func sellBatches(t *testing.T, ins [2]instance, ev int64, keyed bool, perBatch int, buyer func(g, round, i int) string, allowed ...error) {
	t.Helper()
	hammer(t, ins, 6, 6, func(in instance, g, round int) {
		reqs := make([]hold.Request, perBatch)
		for i := range reqs {
			reqs[i] = holdRequest(ev, buyer(g, round, i), 1, keyed, fmt.Sprintf("k-%d-%d-%d", g, round, i))
		}
		defer in.lock(t, ev)()
		outs, err := in.store.CreateHolds(context.Background(), ev, reqs, time.Minute, renderHold)
		if err != nil {
			t.Errorf("batch: %v", err)
			return
		}
		for i, o := range outs {
			if o.Err == nil || o.Replay != nil {
				continue
			}
			ok := false
			for _, a := range allowed {
				ok = ok || errors.Is(o.Err, a)
			}
			if !ok {
				t.Errorf("request %d: %v", i, o.Err)
			}
		}
	})
}

// Two instances' batches of holds for one event, with more demand than
// stock: exactly the stock is held, on both batch paths.
func TestTheRowLockAloneSellsExactlyTheStockInBatches(t *testing.T) {
	for _, path := range batchPaths {
		t.Run(path.name, func(t *testing.T) {
			forRedisUpAndDown(t, 0, func(t *testing.T, ins [2]instance) {
				ev := unguardedEvent(t, ins[0].store, 50) // 12 x 6 batches of 4: 288 asked
				sellBatches(t, ins, ev, path.keys, 4, func(g, round, i int) string {
					return fmt.Sprintf("b%d.%d.%d@example.com", g, round, i)
				}, sale.ErrSoldOut)
				checkStock(t, readSale(t, ins[0].store, ev, 0))
			})
		})
	}
}

// Two instances' batches of holds for the same few buyers, each of whom
// asks for more than the cap: every buyer ends with exactly the cap, on
// both batch paths. Each batch has every buyer once, under a spelling of
// its own, so two batches at once both see a buyer near the cap.
func TestTheRowLockAloneKeepsTheCapInBatches(t *testing.T) {
	const ticketCap = 3
	buyers := []string{"ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com", "eve@example.com", "fay@example.com"}
	for _, path := range batchPaths {
		t.Run(path.name, func(t *testing.T) {
			forRedisUpAndDown(t, ticketCap, func(t *testing.T, ins [2]instance) {
				ev := unguardedEvent(t, ins[0].store, 100_000)
				sellBatches(t, ins, ev, path.keys, len(buyers), func(g, round, i int) string {
					return spelling(buyers[(i+g+round)%len(buyers)], g)
				}, sale.ErrLimitExceeded)
				checkCap(t, readSale(t, ins[0].store, ev, ticketCap), buyers, ticketCap)
			})
		})
	}
}

// spelling is buyer as goroutine g spells it: every other one with a
// capital first letter, the same buyer for the cap.
func spelling(buyer string, g int) string {
	if g%2 == 1 {
		return strings.ToUpper(buyer[:1]) + buyer[1:]
	}
	return buyer
}

// sellSafe has both instances book ev at once through /book/safe's
// store call, one ticket an order, by buyers chosen by buyer(g, round).
// Every outcome must be a booking or one of allowed.
func sellSafe(t *testing.T, ins [2]instance, ev int64, buyer func(g, round int) string, allowed ...error) {
	t.Helper()
	hammer(t, ins, 8, 8, func(in instance, g, round int) {
		o := sale.Order{EventID: ev, Email: buyer(g, round), Quantity: 1}
		defer in.lock(t, ev)()
		out, err := in.store.BookLocked(context.Background(), o, 0, nil, nil)
		if err != nil {
			t.Errorf("book: %v", err)
			return
		}
		if out.Err == nil {
			return
		}
		for _, a := range allowed {
			if errors.Is(out.Err, a) {
				return
			}
		}
		t.Errorf("book: %v", out.Err)
	})
}

// /book/safe from two instances at once, more demand than stock: exactly
// the stock is sold.
func TestTheRowLockAloneSellsExactlyTheStockOnBookSafe(t *testing.T) {
	forRedisUpAndDown(t, 0, func(t *testing.T, ins [2]instance) {
		ev := unguardedEvent(t, ins[0].store, 40) // 16 x 8 orders asked
		sellSafe(t, ins, ev, func(g, round int) string { return fmt.Sprintf("s%d.%d@example.com", g, round) }, sale.ErrSoldOut)
		checkStock(t, readSale(t, ins[0].store, ev, 0))
	})
}

// /book/safe from two instances at once for the same few buyers, each
// asking for more than the cap: every buyer ends with exactly the cap.
func TestTheRowLockAloneKeepsTheCapOnBookSafe(t *testing.T) {
	const ticketCap = 3
	buyers := []string{"ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"}
	forRedisUpAndDown(t, ticketCap, func(t *testing.T, ins [2]instance) {
		ev := unguardedEvent(t, ins[0].store, 100_000)
		sellSafe(t, ins, ev, func(g, round int) string {
			return spelling(buyers[(g+round)%len(buyers)], g)
		}, sale.ErrLimitExceeded)
		checkCap(t, readSale(t, ins[0].store, ev, ticketCap), buyers, ticketCap)
	})
}

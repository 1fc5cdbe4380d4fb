package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// spreadEvents makes, in s, the events a sale over several events plays
// on: a pricey one whose totals can overflow, one of two categories, one
// whose sale has closed; and names one event that does not exist. Made in
// the same order in two fresh databases, their ids (and their categories')
// are the same in both.
func spreadEvents(t *testing.T, s *store.Store) (events []int64, cats [2]int64) {
	t.Helper()
	ctx := context.Background()
	var pricey, two int64
	err := s.DB().QueryRowContext(ctx, `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ('pricey', now(), 25, 25, 33333333.33) RETURNING id`).Scan(&pricey)
	if err != nil {
		t.Fatal(err)
	}
	two = newEvent(t, s, 30)
	cats[0] = defaultCategory(t, s, two)
	if _, err := s.DB().ExecContext(ctx, `UPDATE categories SET total_tickets = 12, available_tickets = 12 WHERE id = $1`, cats[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRowContext(ctx, `INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
		VALUES ($1, 'balcony', 25, 10, 10) RETURNING id`, two).Scan(&cats[1]); err != nil {
		t.Fatal(err)
	}
	closed := windowedEvent(t, s, 10, "now() - interval '2 hours'", "now() - interval '1 hour'")
	return []int64{pricey, two, closed, 1 << 30}, cats
}

// One call of hold_batch_events for several events' batches answers every
// request as the same batches served one event at a time would, leaves
// the same stock and reports the same counts: the same random sale, played
// once each way on two databases. The call gets its batches in a random
// order of events each round. The sale covers both caps, other spellings
// of one buyer, totals that overflow, categories (one short, one named of
// no event, the seed's body on an event of two), a closed sale, an event
// that does not exist, holds that lapse before the sweeper runs.
func TestSeveralEventsInOneCallAnswerAsEachAlone(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			alone, grouped := newStore(t), newStore(t)
			stores := []*store.Store{alone, grouped}
			counted := []*tally{{}, {}}
			var events [2][]int64
			var cats [2][2]int64
			for k, s := range stores {
				s.SetCounters(counted[k])
				s.SetTicketCap(6)
				s.SetClientCap(5)
				events[k], cats[k] = spreadEvents(t, s)
			}
			if fmt.Sprint(events[0], cats[0]) != fmt.Sprint(events[1], cats[1]) {
				t.Fatalf("the two databases' ids differ: %v %v and %v %v", events[0], cats[0], events[1], cats[1])
			}
			evs, two := events[0], cats[0]
			rng := rand.New(rand.NewPCG(seed, 1))
			seen := map[string]int{}
			spellings := []string{"ann@example.com", "ANN@example.com", "bob@example.com", "Ärger@example.com",
				"a\u0308rger@example.com", "cy@example.com", "dee@example.com", "eve@example.com", "fay@example.com", "gus@example.com", "hal@example.com",
				"ivy@example.com", "jo@example.com"}
			clients := []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
			for round := 0; round < 20; round++ {
				batches := make([]hold.EventBatch, len(evs))
				for e, ev := range evs {
					batches[e].EventID = ev
					for range rng.IntN(7) {
						r := request(ev, spellings[rng.IntN(len(spellings))], 1+rng.IntN(4))
						r.Order.Client = clients[rng.IntN(len(clients))]
						if e == 1 {
							switch rng.IntN(4) {
							case 0:
								r = itemsRequest(ev, r.Order.Email, sale.Item{CategoryID: two[0], Quantity: r.Order.Quantity})
							case 1:
								r = itemsRequest(ev, r.Order.Email, sale.Item{CategoryID: two[0], Quantity: 1}, sale.Item{CategoryID: two[1], Quantity: 2})
							case 2:
								r = itemsRequest(ev, r.Order.Email, sale.Item{CategoryID: two[1] + 1000, Quantity: 1})
							}
						}
						batches[e].Reqs = append(batches[e].Reqs, r)
					}
				}
				var got [2][]string
				for _, b := range batches {
					outs, err := alone.CreateHolds(context.Background(), b.EventID, b.Reqs, time.Minute, noRender)
					if err != nil {
						t.Fatalf("round %d, event %d alone: %v", round, b.EventID, err)
					}
					for _, o := range outs {
						got[0] = append(got[0], outcomeKind(o))
					}
				}
				order := rng.Perm(len(batches))
				shuffled := make([]hold.EventBatch, len(batches))
				for i, j := range order {
					shuffled[i] = batches[j]
				}
				outs, err := grouped.CreateHoldsEvents(context.Background(), shuffled, time.Minute, noRender)
				if err != nil {
					t.Fatalf("round %d, grouped: %v", round, err)
				}
				byEvent := make([][]hold.Outcome, len(batches))
				for i, j := range order {
					if outs[i] == nil && len(shuffled[i].Reqs) > 0 {
						t.Fatalf("round %d: event %d passed over, with nobody holding its row", round, shuffled[i].EventID)
					}
					byEvent[j] = outs[i]
				}
				for _, o := range byEvent {
					for _, x := range o {
						got[1] = append(got[1], outcomeKind(x))
						seen[outcomeKind(x)]++
					}
				}
				if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
					t.Fatalf("round %d:\nalone:   %v\ngrouped: %v", round, got[0], got[1])
				}
				// Confirm one hold and let the rest lapse now and then,
				// the same in both: the first by what the caps count, as
				// the two databases' booking ids differ.
				confirm := rng.IntN(3) == 0
				for k, s := range stores {
					if confirm {
						_, err := s.DB().ExecContext(context.Background(), `UPDATE bookings SET booking_status = 'confirmed', confirmed_at = now()
							WHERE id = (SELECT id FROM bookings WHERE booking_status = 'pending' AND expires_at > now()
								ORDER BY event_id, user_email, quantity, client_addr NULLS FIRST LIMIT 1)`)
						if err != nil {
							t.Fatalf("store %d: %v", k, err)
						}
					}
				}
				if round%4 == 3 {
					for _, s := range stores {
						if _, err := s.DB().ExecContext(context.Background(), `UPDATE bookings SET expires_at = now() - interval '1 second'
							WHERE booking_status = 'pending' AND expires_at > now()`); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, ev := range evs[:3] {
					if a, b := stock(t, alone, ev), stock(t, grouped, ev); a != b {
						t.Fatalf("round %d, event %d: stock %d alone, %d grouped", round, ev, a, b)
					}
				}
				if *counted[0] != *counted[1] {
					t.Fatalf("round %d: counted %+v alone, %+v grouped", round, *counted[0], *counted[1])
				}
			}
			for _, ev := range evs[:3] {
				audit(t, grouped, ev)
				checkCategories(t, grouped, ev)
			}
			for _, kind := range []string{"sold_out", "limit_exceeded", "client_limit_exceeded", "not_found"} {
				if seen[kind] == 0 {
					t.Errorf("no request came to %s: the sale does not test it (saw %v)", kind, seen)
				}
			}
			if counted[1].expired == 0 {
				t.Error("no lapsed hold was expired: the sale does not test it")
			}
		})
	}
}

// A call for several events waits for no event's row: with one event's
// row held by another transaction (an admin's change, say), the others'
// requests are served at once and that event's batch comes back unserved,
// for the batcher to serve alone. Without SKIP LOCKED the call would wait
// out the lock timeout and fail every event's batch.
func TestACallOfSeveralEventsPassesOverALockedEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	stalled, free := newEvent(t, s, 10), newEvent(t, s, 10)
	tx := lockEventRow(t, s, stalled)
	outs, err := s.CreateHoldsEvents(context.Background(), []hold.EventBatch{
		{EventID: stalled, Reqs: []hold.Request{request(stalled, "a@example.com", 1)}},
		{EventID: free, Reqs: []hold.Request{request(free, "b@example.com", 2), request(free, "c@example.com", 1)}},
	}, time.Minute, noRender)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0] != nil {
		t.Fatalf("the stalled event's batch was served: %+v", outs[0])
	}
	if len(outs[1]) != 2 || outs[1][0].Err != nil || outs[1][1].Err != nil {
		t.Fatalf("the free event's batch: %+v", outs[1])
	}
	if got := stock(t, s, free); got != 7 {
		t.Fatalf("free event's stock %d, want 7", got)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := stock(t, s, stalled); got != 10 {
		t.Fatalf("stalled event's stock %d, want 10", got)
	}
}

// The same with idempotency keys, now that a keyed batch shares a lane's
// transaction: the passed-over batch comes back unserved whole, its
// replay too (one of its requests answered by its claim used to make the
// batch look served, and its fresh request answered "locked"), and keeps
// no key, so that served alone afterwards it claims them afresh.
func TestAKeyedCallOfSeveralEventsPassesOverALockedEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	stalled, free := newEvent(t, s, 10), newEvent(t, s, 10)
	earlier, err := s.CreateHolds(ctx, stalled, []hold.Request{keyed(stalled, 1, "R", "r")}, time.Minute, renderID)
	if err != nil || earlier[0].Err != nil {
		t.Fatalf("the earlier hold: %v %+v", err, earlier)
	}
	tx := lockEventRow(t, s, stalled)
	outs, err := s.CreateHoldsEvents(ctx, []hold.EventBatch{
		{EventID: stalled, Reqs: []hold.Request{keyed(stalled, 1, "R", "r"), keyed(stalled, 2, "A", "a")}},
		{EventID: free, Reqs: []hold.Request{keyed(free, 2, "B", "b"), keyed(free, 1, "C", "c")}},
	}, time.Minute, renderID)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0] != nil {
		t.Fatalf("the stalled event's batch was served: %+v", outs[0])
	}
	if len(outs[1]) != 2 || outs[1][0].Err != nil || outs[1][1].Err != nil || outs[1][0].Replay != nil {
		t.Fatalf("the free event's batch: %+v", outs[1])
	}
	var kept []string
	if err := s.DB().SelectContext(ctx, &kept, `SELECT key FROM idempotency_keys ORDER BY key`); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(kept) != "[B C R]" {
		t.Fatalf("keys kept %v, want B, C and the earlier R (not A, whose batch was passed over)", kept)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	alone, err := s.CreateHolds(ctx, stalled, []hold.Request{keyed(stalled, 1, "R", "r"), keyed(stalled, 2, "A", "a")}, time.Minute, renderID)
	if err != nil {
		t.Fatal(err)
	}
	if alone[0].Replay == nil || string(alone[0].Replay.Body) != earlier[0].Hold.ID.String() || alone[1].Err != nil || alone[1].Replay != nil {
		t.Fatalf("served alone: %+v, want R replayed and A a fresh hold", alone)
	}
	if got := stock(t, s, stalled); got != 7 {
		t.Fatalf("stalled event's stock %d, want 7", got)
	}
}

// lockEventRow locks event ev's row in a transaction of its own, rolled
// back when the test ends if it has not been before.
func lockEventRow(t *testing.T, s *store.Store, ev int64) *sqlx.Tx {
	t.Helper()
	tx, err := s.DB().BeginTxx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	if _, err := tx.ExecContext(context.Background(), `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
		t.Fatal(err)
	}
	return tx
}

// groupCounter is a store that counts the calls that served several
// events' batches at once.
type groupCounter struct {
	*store.Store
	groups, batches atomic.Int64
}

func (g *groupCounter) CreateHoldsEvents(ctx context.Context, batches []hold.EventBatch, ttl time.Duration, render hold.Render) ([][]hold.Outcome, error) {
	g.groups.Add(1)
	g.batches.Add(int64(len(batches)))
	return g.Store.CreateHoldsEvents(ctx, batches, ttl, render)
}

// Two instances, each batching with one lane so that spread demand
// groups, sell several events at once, with the Redis locks and with Redis
// stopped (row locks alone): every event sells exactly its stock, nobody
// passes the cap, no request fails. The events are unguarded, so only the
// event rows' locks in hold_batch_events stand between the buyers and an
// oversold event; removing its FOR UPDATE makes the Redis-down variant
// fail (see the commit that added this test).
func TestTheRowLockAloneSellsSeveralEventsExactlyInGroups(t *testing.T) {
	const ticketCap, perEvent = 3, 20
	forRedisUpAndDown(t, ticketCap, func(t *testing.T, ins [2]instance) {
		events := make([]int64, 8)
		for i := range events {
			events[i] = unguardedEvent(t, ins[0].store, perEvent)
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		counters := make([]*groupCounter, len(ins))
		batchers := make([]*hold.Batcher, len(ins))
		for i, in := range ins {
			counters[i] = &groupCounter{Store: in.store}
			batchers[i] = hold.NewBatcher(counters[i], in.locks, time.Minute, time.Minute, quiet)
			t.Cleanup(func() { _ = batchers[i].Stop(context.Background()) })
		}
		// About 72 requests an event, by 10 buyers (30 tickets at most
		// under the cap), against 20 tickets: both the stock and the cap
		// refuse.
		var mu sync.Mutex
		refused := map[string]int{}
		hammer(t, ins, 24, 12, func(in instance, g, round int) {
			b := batchers[0]
			if in.store == ins[1].store {
				b = batchers[1]
			}
			ev := events[rand.IntN(len(events))]
			buyer := spelling(fmt.Sprintf("buyer%d@example.com", rand.IntN(10)), g)
			out, err := b.Submit(context.Background(), hold.Request{Order: sale.Order{EventID: ev, Email: buyer, Quantity: 1 + (g+round)%2}})
			if err != nil {
				t.Errorf("submit: %v", err)
				return
			}
			switch {
			case out.Err == nil:
			case errors.Is(out.Err, sale.ErrSoldOut), errors.Is(out.Err, sale.ErrLimitExceeded):
				mu.Lock()
				refused[out.Err.Error()]++
				mu.Unlock()
			default:
				t.Errorf("hold: %v", out.Err)
			}
		})
		for _, ev := range events {
			sl := readSale(t, ins[0].store, ev, ticketCap)
			if len(sl.overCap) > 0 {
				t.Errorf("event %d: buyers above the cap of %d: %v", ev, ticketCap, sl.overCap)
			}
			checkStock(t, sl)
		}
		grouped := counters[0].groups.Load() + counters[1].groups.Load()
		if grouped == 0 {
			t.Fatal("no call served several events: the test does not test grouping")
		}
		t.Logf("%d calls served %d batches of several events; refused %v", grouped,
			counters[0].batches.Load()+counters[1].batches.Load(), refused)
	})
}

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/store"
)

// stockQueue is the waiting room of two instances (queue.Services on one
// Redis and one PostgreSQL, in this process), each reading the stock.
type stockQueue struct {
	db   *sqlx.DB
	st   *store.Store
	rdb  redis.UniversalClient
	svcs []*queue.Service
	ads  []*queue.Admitter
}

func newStockQueue(b *testing.B, prefix string) *stockQueue {
	b.Helper()
	db, err := store.Open(context.Background(), e.dbURL, store.DBOptions{MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	rdb, err := store.OpenRedis(e.redis.URL())
	if err != nil {
		b.Fatal(err)
	}
	q := &stockQueue{db: db, st: store.New(db), rdb: rdb}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < 2; i++ {
		svc := queue.NewService(store.NewQueues(rdb, prefix), q.st, nil, 1, discard)
		svc.Stock, svc.MaxQuantity = q.st, 10
		q.svcs = append(q.svcs, svc)
	}
	return q
}

// start runs both instances' admitters, as holdfast does.
func (q *stockQueue) start(b *testing.B) {
	for _, svc := range q.svcs {
		ad := queue.NewAdmitter(svc, queue.AdmitEvery, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := ad.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		q.ads = append(q.ads, ad)
	}
}

func (q *stockQueue) close() {
	for _, ad := range q.ads {
		ad.Stop(context.Background())
	}
	_ = q.rdb.Close()
	_ = q.db.Close()
}

func (q *stockQueue) event(b *testing.B, tickets, rate int) int64 {
	b.Helper()
	var id int64
	if err := q.db.QueryRowContext(context.Background(), `INSERT INTO events
		(name, event_date, total_tickets, available_tickets, ticket_price, queue_admit_per_second, queue_pass_ttl_seconds)
		VALUES ('bench: queue and stock', now() + interval '30 days', $1, $1, 10, $2, 600) RETURNING id`, tickets, rate).Scan(&id); err != nil {
		b.Fatal(err)
	}
	return id
}

// join makes n places, from par goroutines across both instances (one:
// in order).
func (q *stockQueue) join(b *testing.B, ev int64, from, n, par int) []string {
	b.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += par {
				p, _, err := q.svcs[i%2].Join(context.Background(), ev, fmt.Sprintf("stock-%d-%d@example.com", ev, from+i))
				if err != nil {
					failed.Add(1)
					continue
				}
				ids[i] = p.ID
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d joins failed", failed.Load())
	}
	return ids
}

// hold takes n tickets for place, as hold_batch would with its pass
// (plain SQL: the benchmark measures the queue, not the grant), lapsed
// holds given back first as hold_batch does; false when the stock refused
// it.
func (q *stockQueue) hold(ev int64, place string, n int, ttl time.Duration) (int64, bool) {
	// hold_batch gives the event's lapsed holds back first.
	if _, err := q.db.ExecContext(context.Background(), `UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired'
		WHERE event_id = $1 AND booking_status = 'pending' AND expires_at <= now()`, ev); err != nil {
		panic(fmt.Sprintf("bench: expire: %v", err))
	}
	var id int64
	err := q.db.QueryRowContext(context.Background(), `INSERT INTO bookings
		(event_id, user_email, quantity, total_amount, booking_status, expires_at, queue_place)
		VALUES ($1::int, $2::text, $3::int, 10 * $3::int, 'pending', now() + make_interval(secs => $4::float8), $2::text) RETURNING id`,
		ev, place, n, ttl.Seconds()).Scan(&id)
	if err != nil && !strings.Contains(err.Error(), "events_stock_guard") {
		panic(fmt.Sprintf("bench: hold: %v", err))
	}
	return id, err == nil
}

// BenchmarkQueueSoldOut: 100,000 places wait behind an event of 200
// tickets; the first admitted buyers hold and confirm (a quarter release
// first, their tickets going to the next places). It measures the time
// from the last confirm to the queue's state sold_out on both instances
// (from then on every poll reads it: one HGET), then polls every waiting
// place to check each reads sold_out, and counts admitted places that
// found nothing.
func BenchmarkQueueSoldOut(b *testing.B) {
	const tickets, waiting = 200, 100_000
	q := newStockQueue(b, "bench-soldout:")
	defer q.close()
	ev := q.event(b, tickets, 500)
	// The front of the line joins in order, so the buyers who poll are the
	// ones admitted; the 100,000 behind them join from 32 goroutines.
	places := q.join(b, ev, 0, 2*tickets, 1)
	t0 := time.Now()
	places = append(places, q.join(b, ev, 2*tickets, waiting-tickets, 32)...)
	joinSecs := time.Since(t0).Seconds()
	q.start(b)
	left := map[string]bool{}
	for _, id := range places {
		left[id] = true
	}
	var nothing, resold, released, sold int
	var lastConfirm time.Time
	deadline := time.Now().Add(2 * time.Minute)
	// The buyers near the front poll; the 100,000 behind them wait.
	front := places[:2*tickets]
	for sold < tickets && time.Now().Before(deadline) {
		for i, id := range front {
			if !left[id] {
				continue
			}
			p, err := q.svcs[i%2].Get(context.Background(), id)
			if err != nil || p.Status != queue.StatusAdmitted {
				continue
			}
			delete(left, id)
			h, ok := q.hold(ev, id, 1, 10*time.Minute)
			if !ok {
				nothing++
				continue
			}
			if released > 0 {
				resold++
			}
			if i%4 == 3 {
				_, _ = q.db.ExecContext(context.Background(), `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, h)
				released++
				continue
			}
			if _, err := q.db.ExecContext(context.Background(), `UPDATE bookings SET booking_status = 'confirmed', confirmed_at = now() WHERE id = $1`, h); err != nil {
				b.Fatal(err)
			}
			lastConfirm = time.Now()
			_ = q.svcs[i%2].Done(context.Background(), id)
			sold++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if sold < tickets {
		b.Fatalf("only %d of %d tickets sold in 2 minutes", sold, tickets)
	}
	var toState time.Duration
	for {
		all := true
		for _, svc := range q.svcs {
			st, err := svc.State(context.Background(), ev)
			all = all && err == nil && st.State == queue.StateSoldOut
		}
		if all {
			toState = time.Since(lastConfirm)
			break
		}
		if time.Since(lastConfirm) > 10*time.Second {
			b.Fatal("the queue's state never turned sold_out")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Every place still waiting reads sold_out, on either instance.
	var still []string
	for id := range left {
		still = append(still, id)
	}
	slices.Sort(still)
	t1 := time.Now()
	var wg sync.WaitGroup
	var notSold atomic.Int64
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(still); i += 32 {
				p, err := q.svcs[i%2].Get(context.Background(), still[i])
				if err != nil || p.Status != queue.StatusSoldOut {
					notSold.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	sweep := time.Since(t1)
	if notSold.Load() > 0 {
		b.Fatalf("%d of %d waiting places did not read sold_out", notSold.Load(), len(still))
	}
	line := fmt.Sprintf("queue sold out: %d waiting places (joined at %.0f/s), %d tickets; last confirm -> state sold_out on both instances %d ms; "+
		"then all %d waiting places polled and read sold_out (%.0f polls/s); %d holds from returned tickets (%d released); admitted places that found nothing: %d",
		len(still), float64(waiting-tickets)/joinSecs, tickets, toState.Milliseconds(), len(still), float64(len(still))/sweep.Seconds(), resold, released, nothing)
	e.extra = append(e.extra, line)
	b.ReportMetric(float64(toState.Milliseconds()), "ms-to-sold-out")
	b.ReportMetric(float64(nothing), "found-nothing")
}

// BenchmarkQueueReturnedStock: an event of one ticket with a queue behind
// it; each round the admitted place holds the ticket with a hold of one
// second or so and walks away. It measures the time from the hold's expiry (the
// database's expires_at) to the next place's admission (Redis's clock,
// the same machine's), with no sweep: the step counts a lapsed hold's
// tickets back itself.
func BenchmarkQueueReturnedStock(b *testing.B) {
	const rounds = 15
	q := newStockQueue(b, "bench-returned:")
	defer q.close()
	ev := q.event(b, 1, 500)
	places := q.join(b, ev, 0, rounds+1, 1)
	q.start(b)
	var lags []time.Duration
	for r := 0; r < rounds; r++ {
		id := places[r]
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, err := q.svcs[r%2].Get(context.Background(), id)
			if err == nil && p.Status == queue.StatusAdmitted {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("round %d: place not admitted", r)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Holds of 1 s and a varying fraction of a step, so the expiries
		// fall at every phase of the admission step's period.
		ttl := time.Second + time.Duration(r*37%150)*time.Millisecond
		if _, ok := q.hold(ev, id, 1, ttl); !ok {
			b.Fatalf("round %d: the admitted place found nothing", r)
		}
		var expires time.Time
		if err := q.db.QueryRowContext(context.Background(), `SELECT expires_at FROM bookings WHERE queue_place = $1`, id).Scan(&expires); err != nil {
			b.Fatal(err)
		}
		next := places[r+1]
		for {
			p, err := q.svcs[(r+1)%2].Get(context.Background(), next)
			if err == nil && p.Status == queue.StatusAdmitted {
				lags = append(lags, p.AdmittedAt.Sub(expires))
				break
			}
			if time.Since(expires) > 10*time.Second {
				b.Fatalf("round %d: no place admitted 10 s after the hold expired", r)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	slices.Sort(lags)
	line := fmt.Sprintf("queue returned stock: an expired hold's ticket -> the next place admitted, %d rounds: median %d ms, max %d ms (admission step every %s, no sweep)",
		len(lags), lags[len(lags)/2].Milliseconds(), lags[len(lags)-1].Milliseconds(), queue.AdmitEvery)
	e.extra = append(e.extra, line)
	b.ReportMetric(float64(lags[len(lags)-1].Milliseconds()), "max-ms-to-admit")
}

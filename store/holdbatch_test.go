package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// outcomeKind names what a request came to, so two paths can be compared.
func outcomeKind(o hold.Outcome) string {
	switch {
	case o.Err == nil:
		return fmt.Sprintf("held %d %s", o.Hold.Quantity, o.Hold.TotalAmount)
	case errors.Is(o.Err, sale.ErrSoldOut):
		return "sold_out"
	case errors.Is(o.Err, sale.ErrLimitExceeded):
		return "limit_exceeded"
	case errors.Is(o.Err, sale.ErrClientLimitExceeded):
		return "client_limit_exceeded"
	case errors.Is(o.Err, sale.ErrEventNotFound):
		return "not_found"
	default:
		return "error: " + o.Err.Error()
	}
}

// tally counts what a store reports to its metrics.
type tally struct{ created, confirmed, released, expired int }

func (c *tally) HoldsCreated(n int)   { c.created += n }
func (c *tally) HoldsConfirmed(n int) { c.confirmed += n }
func (c *tally) HoldsReleased(n int)  { c.released += n }
func (c *tally) HoldsExpired(n int)   { c.expired += n }
func (c *tally) HoldsExtended(int)    {}
func (c *tally) HoldsCancelled(int)   {}

// hold_batch is the one writing of the rules that grant a hold; a batch
// whose requests carry idempotency keys calls it inside the transaction that
// claims and keeps them. The same random sale, played once without keys and
// once with a fresh key on every request, must get the same answer for every
// request, leave the same stock and report the same counts to the metrics:
// keys add statements, never rules. The sale covers buyers who come back
// under other spellings of their email (case, NFC and NFD), both caps (per
// buyer, and per client address, with requests whose address is unknown),
// prices whose totals overflow, holds that lapse before the sweeper runs.
func TestAKeyedBatchAnswersASaleAsAPlainOne(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			plain, keyed := newStore(t), newStore(t)
			stores := []*store.Store{plain, keyed}
			counted := []*tally{{}, {}}
			plain.SetCounters(counted[0])
			keyed.SetCounters(counted[1])
			events := make([]int64, 2)
			for i, s := range stores {
				s.SetTicketCap(6)
				s.SetClientCap(9)
				err := s.DB().QueryRowContext(context.Background(), `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
					VALUES ('e', now(), 40, 40, 33333333.33) RETURNING id`).Scan(&events[i])
				if err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(seed, 0))
			seen := map[string]int{}
			spellings := []string{"ann@example.com", "ANN@example.com", "bob@example.com", "Ärger@example.com", "ärger@example.com",
				"a\u0308rger@example.com", "A\u0308RGER@example.com", "cy@example.com", "dee@example.com", "eve@example.com",
				"fay@example.com", "gus@example.com", "hal@example.com", "ivy@example.com"}
			clients := []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
			for round := 0; round < 25; round++ {
				n := 1 + rng.IntN(12)
				emails, qtys, from := make([]string, n), make([]int, n), make([]netip.Addr, n)
				for i := range emails {
					emails[i], qtys[i] = spellings[rng.IntN(len(spellings))], 1+rng.IntN(4)
					from[i] = clients[rng.IntN(len(clients))]
				}
				lapseAll := rng.IntN(5) == 0
				confirmAny := rng.IntN(3) == 0
				var got [2][]string
				for k, s := range stores {
					reqs := make([]hold.Request, n)
					for i := range reqs {
						reqs[i] = request(events[k], emails[i], qtys[i])
						reqs[i].Order.Client = from[i]
						if k == 1 {
							reqs[i].Key = &idempotency.Key{Scope: hold.ScopeCreate, Key: fmt.Sprintf("%d-%d-%d", seed, round, i), Hash: []byte{byte(i)}}
						}
					}
					outs, err := s.CreateHolds(context.Background(), events[k], reqs, time.Minute, renderKept)
					if err != nil {
						t.Fatalf("round %d, store %d: %v", round, k, err)
					}
					confirmed := false
					for _, o := range outs {
						got[k] = append(got[k], outcomeKind(o))
						seen[outcomeKind(o)]++
						// A confirmed hold still counts against its
						// buyer, no longer against its address.
						if o.Err == nil && confirmAny && !confirmed {
							confirmed = true
							if _, err := s.Confirm(context.Background(), o.Hold.ID, nil, nil); err != nil {
								t.Fatal(err)
							}
						}
					}
					if lapseAll {
						_, err := s.DB().ExecContext(context.Background(), `UPDATE bookings SET expires_at = now() - interval '1 second'
							WHERE event_id = $1 AND booking_status = 'pending'`, events[k])
						if err != nil {
							t.Fatal(err)
						}
					}
				}
				if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
					t.Fatalf("round %d, requests %v x %v:\nwithout keys: %v\nwith keys:    %v", round, emails, qtys, got[0], got[1])
				}
				if a, b := stock(t, plain, events[0]), stock(t, keyed, events[1]); a != b {
					t.Fatalf("round %d: stock %d without keys, %d with keys", round, a, b)
				}
				if *counted[0] != *counted[1] {
					t.Fatalf("round %d: counted %+v without keys, %+v with keys", round, *counted[0], *counted[1])
				}
			}
			audit(t, plain, events[0])
			audit(t, keyed, events[1])
			for _, kind := range []string{"sold_out", "limit_exceeded", "client_limit_exceeded"} {
				if seen[kind] == 0 {
					t.Errorf("no request came to %s: the sale does not test it (saw %v)", kind, seen)
				}
			}
		})
	}
}

// renderKept renders an outcome as POST /holds keeps it.
func renderKept(h hold.Hold, err error) idempotency.Response {
	if err != nil {
		return idempotency.Failure(err, nil)
	}
	return idempotency.Success(http.StatusCreated, h)
}

// An event that does not exist is every request's not_found, with
// hold_batch called alone or inside a transaction.
func TestABatchForNoEventIsNotFound(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		reqs := []hold.Request{request(1<<40, "a@example.com", 1), request(1<<40, "b@example.com", 2)}
		outs, err := s.CreateHolds(context.Background(), 1<<40, reqs, time.Minute, noRender)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range outs {
			if !errors.Is(o.Err, sale.ErrEventNotFound) {
				t.Fatalf("request %d: %v, want not_found", i, o.Err)
			}
		}
	})
}

// PL/pgSQL keeps a statement's plan for the session. hold_batch's plans,
// made while bookings was nearly empty, used to read the whole table, or
// all the event's bookings, to count one buyer's tickets, and were kept
// while the table grew: a batch that took a millisecond took seconds a
// hundred thousand bookings later. Read without a clock: once the
// session's plans are settled, a batch of buyers new to the event reads
// (almost) no bookings, however many the event has.
//
// On a queued event the same holds of the check that a pass's place has
// not booked already (pass_used): planned on an empty table it read every
// live booking of the event, 0.46 ms a request on a sale's event.
func TestHoldBatchReadsOnlyItsBuyersBookings(t *testing.T) {
	t.Parallel()
	for _, queued := range []bool{false, true} {
		for _, analyzed := range []bool{false, true} {
			t.Run(fmt.Sprintf("queued=%v/analyzed=%v", queued, analyzed), func(t *testing.T) {
				t.Parallel()
				holdBatchReadsOnlyItsBuyersBookings(t, queued, analyzed)
			})
		}
	}
}

// holdBatchReadsOnlyItsBuyersBookings plans the session's statements on a
// nearly empty bookings: with statistics that say so (analyzed), as
// autovacuum leaves them early in a sale, or with none yet.
func holdBatchReadsOnlyItsBuyersBookings(t *testing.T, queued, analyzed bool) {
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 1_000_000)
	place := func(who string, i int) string { return "" }
	if queued {
		if _, err := s.DB().ExecContext(ctx, `UPDATE events SET queue_admit_per_second = 50, queue_pass_ttl_seconds = 600 WHERE id = $1`, ev); err != nil {
			t.Fatal(err)
		}
		place = func(who string, i int) string { return fmt.Sprintf("%d-%s%d", ev, who, i) }
	}
	conn, err := s.DB().Connx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func(q sqlx.ExecerContext, i int) {
		t.Helper()
		emails := []string{fmt.Sprintf("a%d@example.com", i), fmt.Sprintf("b%d@example.com", i)}
		_, err := q.ExecContext(ctx, `SELECT * FROM hold_batch($1, $2, $2, $3, '{1,2}', '{NULL,NULL}', $4, 60000000, 10, 20, $5)`, ev,
			pq.Array(emails), pq.Array([]string{fmt.Sprintf("192.0.2.%d", i), fmt.Sprintf("192.0.2.%d", i+100)}), pq.Array([]int64{1, 1}),
			pq.Array([]string{place("a", i), place("b", i)}))
		if err != nil {
			t.Fatal(err)
		}
	}
	// More calls than PostgreSQL makes before it settles on a generic
	// plan.
	for i := 0; i < 10; i++ {
		call(conn, i)
	}
	if analyzed {
		if _, err := conn.ExecContext(ctx, `ANALYZE bookings`); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < 20; i++ {
		call(conn, i)
	}
	_, err = s.DB().ExecContext(ctx, `INSERT INTO bookings (event_id, user_email, quantity, total_amount, expires_at, queue_place)
		SELECT $1, 'other' || g || '@example.com', 1, 1, now() + interval '1 hour', nullif($2, '') || g FROM generate_series(1, 2000) g`,
		ev, place("other", 0))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// The session's counts, its earlier calls' included: read before and
	// after, in one transaction, so none is reported away in between.
	read := func() (seqScans, rows int64) {
		t.Helper()
		err := tx.QueryRowxContext(ctx, `SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
			FROM pg_stat_xact_user_tables WHERE relname = 'bookings'`).Scan(&seqScans, &rows)
		if err != nil {
			t.Fatal(err)
		}
		return seqScans, rows
	}
	scans0, rows0 := read()
	call(tx, 100)
	scans1, rows1 := read()
	if scans1 != scans0 || rows1-rows0 > 20 {
		t.Fatalf("a batch of two new buyers made %d full scans of bookings and read %d bookings", scans1-scans0, rows1-rows0)
	}
}

// proxiedStore is a store whose connections pass through a proxy.
func proxiedStore(t *testing.T) (*store.Store, *proxy.Proxy) {
	t.Helper()
	dbURL := testenv.DatabaseURL(t)
	// The proxy reaches the server as the URL does, over TCP or its Unix
	// socket; the store reaches the proxy over TCP.
	addr, err := testenv.DatabaseAddr(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	proxied, err := testenv.WithAddr(dbURL, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), proxied, store.DBOptions{MaxConns: 4, LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return store.New(db), p
}

// A connection lost after hold_batch committed but before its answer
// arrived: database/sql, told by lib/pq that the connection went bad, ran
// the call again on a fresh one and every buyer of the batch got a second
// hold. The caller must hear that the outcome is unknown, and the batch must
// have run once.
func TestALostAnswerDoesNotRunTheBatchTwice(t *testing.T) {
	t.Parallel()
	s, p := proxiedStore(t)
	ev := newEvent(t, s, 100)
	p.CutOnce("hold_batch")
	_, err := s.CreateHolds(context.Background(), ev, []hold.Request{request(ev, "a@example.com", 2)}, time.Minute, noRender)
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("the batch whose answer was lost returned %v, want unavailable", err)
	}
	var holds int
	if err := s.DB().GetContext(context.Background(), &holds, `SELECT count(*) FROM bookings WHERE event_id = $1`, ev); err != nil {
		t.Fatal(err)
	}
	if holds != 1 {
		t.Fatalf("the batch made %d holds for one request", holds)
	}
	audit(t, s, ev)
}

// The same for an event an admin creates: it was created twice.
func TestALostAnswerDoesNotCreateTheEventTwice(t *testing.T) {
	t.Parallel()
	s, p := proxiedStore(t)
	name, total, price, date := "lost answer", 10, money.Cents(500), time.Now().Add(time.Hour)
	p.CutOnce("INSERT INTO events")
	_, err := s.CreateEvent(context.Background(), sale.EventPatch{Name: &name, EventDate: &date, Total: &total, Price: &price})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("the create whose answer was lost returned %v, want unavailable", err)
	}
	var events int
	if err := s.DB().GetContext(context.Background(), &events, `SELECT count(*) FROM events WHERE name = $1`, name); err != nil {
		t.Fatal(err)
	}
	if events != 1 {
		t.Fatalf("one create made %d events", events)
	}
}

// hold_batch refuses a batch with a quantity below one outright, before it
// grants anything: the service never sends one, but the function must not
// trust that.
func TestHoldBatchRefusesQuantitiesBelowOne(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 10)
	for _, qtys := range [][]int64{{1, 0}, {-3, 1}} {
		_, err := s.DB().ExecContext(context.Background(), `SELECT * FROM hold_batch($1, $2, $2, '{NULL,NULL}', '{1,2}', '{NULL,NULL}', $3, 60000000, 0, 0)`, ev,
			pq.Array([]string{"a@example.com", "b@example.com"}), pq.Array(qtys))
		if err == nil || !strings.Contains(err.Error(), "quantities must be positive") {
			t.Fatalf("quantities %v: %v", qtys, err)
		}
	}
	if got := stock(t, s, ev); got != 10 {
		t.Fatalf("stock = %d, want 10", got)
	}
}

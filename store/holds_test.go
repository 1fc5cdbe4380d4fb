package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

func newStore(t *testing.T) *store.Store {
	t.Helper()
	db, err := store.Open(context.Background(), testenv.DatabaseURL(t), store.DBOptions{
		MaxConns: 20, LockTimeout: 10 * time.Second, StatementTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return store.New(db)
}

func newEvent(t *testing.T, s *store.Store, tickets int) int64 {
	t.Helper()
	var id int64
	err := s.DB().QueryRowContext(context.Background(), `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ('e', now(), $1, $1, 12.34) RETURNING id`, tickets).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func stock(t *testing.T, s *store.Store, ev int64) int {
	t.Helper()
	var n int
	if err := s.DB().GetContext(context.Background(), &n, `SELECT available_tickets FROM events WHERE id = $1`, ev); err != nil {
		t.Fatal(err)
	}
	return n
}

func noRender(hold.Hold, error) idempotency.Response { return idempotency.Response{} }

// request is one buyer's request for qty tickets of ev.
func request(ev int64, email string, qty int) hold.Request {
	return hold.Request{Order: sale.Order{EventID: ev, Email: email, Quantity: qty}}
}

func takeHold(t *testing.T, s *store.Store, ev int64, qty int, ttl time.Duration) hold.Hold {
	t.Helper()
	outs, err := s.CreateHolds(context.Background(), ev, []hold.Request{request(ev, "a@example.com", qty)}, ttl, noRender)
	if err != nil || outs[0].Err != nil {
		t.Fatalf("hold: %v %v", err, outs)
	}
	return outs[0].Hold
}

// lapse moves a hold's expiry into the past, as if its time had run out.
func lapse(t *testing.T, s *store.Store, id uuid.UUID) {
	t.Helper()
	if _, err := s.DB().ExecContext(context.Background(), `UPDATE bookings SET expires_at = now() - interval '1 second' WHERE hold_id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

func audit(t *testing.T, s *store.Store, ev int64) {
	t.Helper()
	a, err := s.Audit(context.Background(), []int64{ev}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 1 || len(a[0].Problems) > 0 {
		t.Fatalf("audit: %+v", a)
	}
}

// forBothBatchPaths runs test on each of the two ways the store serves a
// batch of holds: one call of hold_batch, and the transaction of several
// statements that batches with idempotency keys take.
func forBothBatchPaths(t *testing.T, test func(t *testing.T, s *store.Store)) {
	t.Parallel()
	for _, inTx := range []bool{false, true} {
		name := "one call"
		if inTx {
			name = "transaction"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			if inTx {
				s.UseTxForAllBatches()
			}
			test(t, s)
		})
	}
}

// waitBlocked waits until a backend of this database is waiting on a lock.
func waitBlocked(t *testing.T, db *sqlx.DB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := db.GetContext(context.Background(), &n, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("nobody ever waited on a lock")
}

func TestConfirmWaitsForASweepInFlightThenAnswersExpired(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	h := takeHold(t, s, ev, 3, time.Minute)
	lapse(t, s, h.ID)

	// The sweeper has locked the lapsed hold and not committed.
	sweep, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sweep.Rollback()
	if n, err := s.SweepBatchTx(ctx, sweep, ev, 100); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}

	type result struct {
		out hold.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := s.Confirm(ctx, h.ID, nil, nil)
		done <- result{out, err}
	}()
	waitBlocked(t, s.DB())
	select {
	case r := <-done:
		t.Fatalf("confirm did not wait for the sweep: %+v", r)
	default:
	}
	if err := sweep.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !errors.Is(r.out.Err, hold.ErrExpired) {
		t.Fatalf("confirm = %+v, %v; want ErrExpired", r.out, r.err)
	}
	if got := stock(t, s, ev); got != 10 {
		t.Fatalf("stock = %d, want 10 (given back exactly once)", got)
	}
	audit(t, s, ev)
}

func TestASweepSkipsAConfirmInFlight(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	h := takeHold(t, s, ev, 3, 2*time.Second)

	// A confirm holds the row, in time.
	confirm, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer confirm.Rollback()
	got, err := s.ConfirmTx(ctx, confirm, h.ID)
	if err != nil || got.Status != hold.StatusConfirmed {
		t.Fatalf("confirm: %+v, %v", got, err)
	}
	// Its hold lapses meanwhile (the committed row is still pending), and
	// the sweeper runs: it must skip the locked row, neither waiting for it
	// nor restoring its stock.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var lapsed bool
		err := s.DB().GetContext(ctx, &lapsed, `SELECT expires_at <= now() FROM bookings WHERE hold_id = $1`, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		if lapsed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hold never lapsed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	res, err := s.SweepExpired(ctx, 100)
	if err != nil || res.Expired != 0 || res.Busy != 0 {
		t.Fatalf("sweep = %+v, %v; want nothing swept and nothing waited for", res, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the sweep took %s: it waited for the confirm's row instead of skipping it", took)
	}
	if err := confirm.Commit(); err != nil {
		t.Fatal(err)
	}
	final, err := s.Hold(ctx, h.ID)
	if err != nil || final.Status != hold.StatusConfirmed {
		t.Fatalf("hold = %+v, %v; want confirmed", final, err)
	}
	if got := stock(t, s, ev); got != 7 {
		t.Fatalf("stock = %d, want 7 (never moved)", got)
	}
	audit(t, s, ev)
}

func TestThreeSweepersRestoreEachHoldOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const holds = 10000
	var evs []int64
	for i := 0; i < 4; i++ {
		evs = append(evs, newEvent(t, s, holds))
	}
	// 10,000 lapsed holds spread over the events, of 1 to 3 tickets.
	_, err := s.DB().ExecContext(ctx, `
		INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at)
		SELECT ($1::bigint[])[1 + g % 4], 'b' || g || '@example.com', 1 + g % 3, 12.34 * (1 + g % 3), 'pending',
		       now() - interval '1 minute'
		FROM generate_series(1, $2) AS g`, evs, holds)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]hold.SweepResult, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			results[i], err = s.SweepExpired(ctx, 500)
			if err != nil {
				t.Errorf("sweeper %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += r.Expired
	}
	// A sweeper may find rows another holds and skip them; one more pass
	// collects whatever all three skipped.
	rest, err := s.SweepExpired(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	if total+rest.Expired != holds {
		t.Fatalf("swept %d + %d, want %d each exactly once", total, rest.Expired, holds)
	}
	for _, ev := range evs {
		if got := stock(t, s, ev); got != holds {
			t.Fatalf("event %d stock = %d, want %d", ev, got, holds)
		}
		audit(t, s, ev)
	}
}

func TestShortStockExpiresLapsedHoldsFirst(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		ev := newEvent(t, s, 2)
		h := takeHold(t, s, ev, 2, time.Minute)
		lapse(t, s, h.ID)
		// The sweeper has not run: the buyer must not be told sold out.
		next := takeHold(t, s, ev, 2, time.Minute)
		if next.Status != hold.StatusPending {
			t.Fatalf("hold = %+v", next)
		}
		old, err := s.Hold(context.Background(), h.ID)
		if err != nil || old.Status != hold.StatusExpired {
			t.Fatalf("old hold = %+v, %v; want expired", old, err)
		}
		audit(t, s, ev)
	})
}

func TestPurgeKeysDeletesOnlyKeysPastADay(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	_, err := s.DB().ExecContext(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at)
		SELECT 's', 'old' || g, '\x00'::bytea, 201, '{}'::bytea, now() - interval '25 hours' FROM generate_series(1, 2500) g
		UNION ALL SELECT 's', 'fresh', '\x00'::bytea, 201, '{}'::bytea, now() - interval '23 hours'`)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeKeys(ctx, 1000)
	if err != nil || n != 2500 {
		t.Fatalf("purged %d (%v), want 2500", n, err)
	}
	var left []string
	if err := s.DB().SelectContext(ctx, &left, `SELECT key FROM idempotency_keys`); err != nil || len(left) != 1 || left[0] != "fresh" {
		t.Fatalf("left %v (%v), want the fresh key", left, err)
	}
}

func TestATotalTooLargeIsOnlyItsOwnRequestsError(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		var ev int64
		err := s.DB().QueryRowContext(ctx, `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
			VALUES ('dear', now(), 100, 100, 20000000.00) RETURNING id`).Scan(&ev)
		if err != nil {
			t.Fatal(err)
		}
		a := func(q int) hold.Request { return request(ev, "a@example.com", q) }
		outs, err := s.CreateHolds(ctx, ev, []hold.Request{a(1), a(5), a(1), a(1)}, time.Minute, noRender)
		if err != nil {
			t.Fatalf("the batch failed as a whole: %v", err)
		}
		for i, want := range []bool{true, false, true, true} {
			if (outs[i].Err == nil) != want {
				t.Fatalf("request %d: %+v", i, outs[i])
			}
		}
		if !strings.Contains(outs[1].Err.Error(), "invalid_request") {
			t.Fatalf("the dear request got %v, want invalid_request", outs[1].Err)
		}
		if got := stock(t, s, ev); got != 97 {
			t.Fatalf("stock = %d, want 97", got)
		}
	})
}

// A batch that crosses the sell-out point while lapsed holds wait to be
// swept: the stock re-read after expiring them must still count the
// tickets this batch granted before (they are inserted after the loop).
// It used to over-grant, and the stock guard failed the whole batch.
func TestABatchThatExpiresLapsedHoldsCountsItsOwnGrants(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		ev := newEvent(t, s, 3)
		lapsed := takeHold(t, s, ev, 2, time.Minute)
		lapse(t, s, lapsed.ID)
		b := func(q int) hold.Request { return request(ev, "b@example.com", q) }
		outs, err := s.CreateHolds(ctx, ev, []hold.Request{b(1), b(1), b(2)}, time.Minute, noRender)
		if err != nil {
			t.Fatalf("the batch failed as a whole: %v", err)
		}
		if outs[0].Err != nil || outs[1].Err != nil || !errors.Is(outs[2].Err, sale.ErrSoldOut) {
			t.Fatalf("outcomes %v, %v, %v; want 201, 201, sold out", outs[0].Err, outs[1].Err, outs[2].Err)
		}
		if got := stock(t, s, ev); got != 1 {
			t.Fatalf("stock = %d, want 1", got)
		}
		audit(t, s, ev)
	})
}

// The cap folds emails the way the database does: an email with a capital
// outside ASCII used to be folded by Go alone, match nothing, and escape
// the cap entirely.
func TestTheCapHoldsForEveryAlphabet(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		s.SetTicketCap(2)
		ctx := context.Background()
		ev := newEvent(t, s, 100)
		granted := 0
		for i := 0; i < 5; i++ {
			outs, err := s.CreateHolds(ctx, ev, []hold.Request{request(ev, "Ärger@example.com", 1)}, time.Minute, noRender)
			if err != nil {
				t.Fatal(err)
			}
			if outs[0].Err == nil {
				granted++
			} else if !errors.Is(outs[0].Err, sale.ErrLimitExceeded) {
				t.Fatal(outs[0].Err)
			}
		}
		if granted != 2 {
			t.Fatalf("one buyer got %d tickets under a cap of 2", granted)
		}
	})
}

// A lapsed hold still counts against its buyer's cap while a confirm may
// still make it stick (its row is locked: one is in flight). Otherwise it
// is expired on the way, as for stock: nobody is told limit_exceeded only
// because the sweeper has not run yet. (The per-buyer counts used to be
// read before lapsed holds were expired and never corrected.)
func TestALapsedHoldCountsAgainstTheCapOnlyWhileAConfirmMayTakeIt(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		s.SetTicketCap(2)
		ctx := context.Background()
		ev := newEvent(t, s, 100)
		h := takeHold(t, s, ev, 2, time.Minute)
		lapse(t, s, h.ID)
		confirm, err := s.DB().BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer confirm.Rollback()
		if _, err := confirm.ExecContext(ctx, `SELECT 1 FROM bookings WHERE hold_id = $1 FOR UPDATE`, h.ID); err != nil {
			t.Fatal(err)
		}
		outs, err := s.CreateHolds(ctx, ev, []hold.Request{request(ev, "A@example.com", 2)}, time.Minute, noRender)
		if err != nil || !errors.Is(outs[0].Err, sale.ErrLimitExceeded) {
			t.Fatalf("got %v, %v; want limit_exceeded while a confirm holds the lapsed hold", outs, err)
		}
		if err := confirm.Rollback(); err != nil {
			t.Fatal(err)
		}
		outs, err = s.CreateHolds(ctx, ev, []hold.Request{request(ev, "A@example.com", 2)}, time.Minute, noRender)
		if err != nil || outs[0].Err != nil {
			t.Fatalf("once nothing could confirm the lapsed hold: %v, %v", outs, err)
		}
		old, err := s.Hold(ctx, h.ID)
		if err != nil || old.Status != hold.StatusExpired {
			t.Fatalf("the lapsed hold is %+v, %v; want expired", old, err)
		}
		audit(t, s, ev)
	})
}

// The reviewer's case: the whole stock sits in one buyer's lapsed hold.
// Expiring it to find stock must also take it off the buyer's count.
func TestAHoldExpiredToFindStockNoLongerCountsAgainstTheCap(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		s.SetTicketCap(2)
		ctx := context.Background()
		ev := newEvent(t, s, 2)
		h := takeHold(t, s, ev, 2, time.Minute)
		lapse(t, s, h.ID)
		outs, err := s.CreateHolds(ctx, ev, []hold.Request{request(ev, "a@example.com", 2)}, time.Minute, noRender)
		if err != nil || outs[0].Err != nil {
			t.Fatalf("got %v, %v; want the two tickets held again", outs, err)
		}
		if got := stock(t, s, ev); got != 0 {
			t.Fatalf("stock = %d, want 0", got)
		}
		audit(t, s, ev)
	})
}

// A hold lasts exactly its TTL from when it was made, on every path: a
// keyed batch and /book/safe call hold_batch inside a transaction that
// began earlier, whose start is not when the hold was made.
func TestAHoldLastsExactlyItsTTLOnEveryPath(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 10)
	ttl := 90 * time.Second
	plain := request(ev, "a@example.com", 1)
	keyed := request(ev, "b@example.com", 1)
	keyed.Key = &idempotency.Key{Scope: hold.ScopeCreate, Key: "ttl-1", Hash: []byte("x")}
	for name, req := range map[string]hold.Request{"one call": plain, "keyed": keyed} {
		outs, err := s.CreateHolds(context.Background(), ev, []hold.Request{req}, ttl, func(h hold.Hold, err error) idempotency.Response {
			return idempotency.Success(201, h)
		})
		if err != nil || outs[0].Err != nil {
			t.Fatalf("%s: %v %v", name, err, outs[0].Err)
		}
		h := outs[0].Hold
		if got := h.ExpiresAt.Sub(h.CreatedAt); got != ttl {
			t.Errorf("%s: the hold lasts %s from its created_at, want %s", name, got, ttl)
		}
	}
}

// A request short of stock expires its event's lapsed holds first, lapsed
// by the clock when it decides. It read now(), when its call began, which
// is before it waited for the event's row: the only hold lapsed during the
// wait, read expired everywhere else, and the request was told sold_out.
// The same for seats (hold_seats).
func TestAHoldThatLapsedWhileARequestWaitedForTheRowIsTakenBack(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		ev := newEvent(t, s, 1)
		seated, cat := seatedEvent(t, s, 1, 1)
		const ttl = 500 * time.Millisecond
		for _, c := range []struct {
			name          string
			ev            int64
			first, second hold.Request
		}{
			{"tickets", ev, request(ev, "a@example.com", 1), request(ev, "b@example.com", 1)},
			{"seats", seated, bestRequest(seated, "a@example.com", cat, 1), bestRequest(seated, "b@example.com", cat, 1)},
		} {
			if outs, err := s.CreateHolds(ctx, c.ev, []hold.Request{c.first}, ttl, noRender); err != nil || outs[0].Err != nil {
				t.Fatalf("%s: the first hold: %v %v", c.name, outs, err)
			}
			lapses := time.Now().Add(ttl)
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, c.ev); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				outs, err := s.CreateHolds(ctx, c.ev, []hold.Request{c.second}, time.Minute, noRender)
				if err == nil {
					err = outs[0].Err
				}
				done <- err
			}()
			waitBlocked(t, s.DB())
			time.Sleep(time.Until(lapses) + 100*time.Millisecond) // the first hold lapses meanwhile
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("%s: the only hold had lapsed when the request got the row; got %v, want a hold", c.name, err)
			}
		}
	})
}

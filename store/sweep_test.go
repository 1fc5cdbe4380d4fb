package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/store"
)

// corrupt runs q with every trigger off, as superuser, inside a transaction
// of its own: the schema refuses the states a test of the sweeper or of
// `holdfast check` needs, and SET LOCAL session_replication_role = replica
// switches the refusing triggers off for this transaction only (the CHECK
// constraints stay).
func corrupt(t *testing.T, s *store.Store, q string, args ...any) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// One event whose give-back the database refuses used to end the sweep:
// events after it (in id order) kept their lapsed holds, and their stock,
// for good.
func TestSweepGoesOnPastAnEventThatFails(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	broken, healthy := newEvent(t, s, 10), newEvent(t, s, 10)
	for _, ev := range []int64{broken, healthy} {
		lapse(t, s, takeHold(t, s, ev, 3, time.Minute).ID)
	}
	// Someone put the broken event's stock back by hand under its live
	// hold: giving the hold back would exceed the total.
	corrupt(t, s, `UPDATE events SET available_tickets = total_tickets WHERE id = $1`, broken)

	res, err := s.SweepExpired(ctx, 100)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if res.Expired != 1 || len(res.Failed) != 1 || res.Failed[0].EventID != broken || res.Failed[0].Err == nil {
		t.Fatalf("sweep: %+v; want 1 expired and event %d failed", res, broken)
	}
	if got := stock(t, s, healthy); got != 10 {
		t.Fatalf("healthy event's stock = %d, want 10: its lapsed hold was not swept", got)
	}
	if got := stock(t, s, broken); got != 10 {
		t.Fatalf("broken event's stock = %d, want it left at 10", got)
	}
}

// Each hold confirmed leaves a dead entry in the pending indexes, inside
// the sweeper's range once its expiry has passed. The sweeper's listing of
// events with lapsed holds must pass over them, not fetch every one from
// the heap on every sweep.
func TestTheSweepersListingPassesOverConfirmedHolds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const holds = 20_000
	for k := range 10 {
		ev := newEvent(t, s, holds)
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at)
			SELECT $1, 'b' || g || '@example.com', 1, 1, 'pending', now() + interval '1 second' FROM generate_series(1, $2::int) g`, ev, holds/10); err != nil {
			t.Fatal(k, err)
		}
		if _, err := s.DB().ExecContext(ctx, `UPDATE bookings SET booking_status = 'confirmed', confirmed_at = now()
			WHERE event_id = $1 AND booking_status = 'pending'`, ev); err != nil {
			t.Fatal(k, err)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	// Two sweeps apart, as TestAPublishRoundPassesOverWhatWasPublished
	// says why.
	for range 2 {
		if res, err := s.SweepExpired(ctx, 100); err != nil || res.Expired != 0 {
			t.Fatalf("sweep: %+v, %v; want nothing swept", res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	heap, text := heapReads(t, s, store.LapsedStatements[0], store.LapsedStatements[1], 1000, 0)
	if strings.Contains(text, "Bitmap") || heap > holds/4 {
		t.Fatalf("with %d confirmed holds past their expiry, the sweeper's listing fetched %d from the heap:\n%s", holds, heap, text)
	}
}

// An event whose row another transaction holds (an admin's edit,
// /book/safe's work, a session left open) is swept after every other one:
// swept in id order, each event after it waited a whole lock timeout for
// it, and their holds came back that late.
func TestAnEventWithItsRowHeldDelaysNoOtherEventsSweep(t *testing.T) {
	t.Parallel()
	s := newStore(t) // a lock timeout of 10 s
	ctx := context.Background()
	held, free := newEvent(t, s, 10), newEvent(t, s, 10)
	heldHold, freeHold := takeHold(t, s, held, 3, time.Minute), takeHold(t, s, free, 3, time.Minute)
	lapse(t, s, heldHold.ID)
	lapse(t, s, freeHold.ID)
	tx := lockEventRow(t, s, held)
	swept := make(chan hold.SweepResult, 1)
	go func() {
		res, err := s.SweepExpired(ctx, 100)
		if err != nil {
			t.Error(err)
		}
		swept <- res
	}()
	deadline := time.Now().Add(time.Second)
	for stock(t, s, free) != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the free event's lapsed hold not back a second into the sweep, while another event's row is held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	res := <-swept
	if res.Expired != 2 || res.Events != 2 || res.Busy != 0 || len(res.Failed) != 0 {
		t.Fatalf("sweep: %+v; want both holds expired, the held event's once its row was free", res)
	}
	if got := stock(t, s, held); got != 10 {
		t.Fatalf("the held event's stock = %d after its row was let go, want 10", got)
	}
}

// More events with lapsed holds than one listing reads (1,000): a single
// sweep gives every one back, instead of leaving the events after the
// first page for later runs, a sweep interval each.
func TestASweepReachesEveryEventOfMoreThanAPage(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const n = 1100
	var events []int64
	if err := s.DB().SelectContext(ctx, &events, `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		SELECT 'e' || g, now(), 5, 5, 10 FROM generate_series(1, $1) g RETURNING id`, n); err != nil {
		t.Fatal(err)
	}
	batches := make([]hold.EventBatch, len(events))
	for i, ev := range events {
		batches[i] = hold.EventBatch{EventID: ev, Reqs: []hold.Request{request(ev, "a@example.com", 1)}}
	}
	outs, err := s.CreateHoldsEvents(ctx, batches, time.Minute, noRender)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		if o == nil || o[0].Err != nil {
			t.Fatalf("event %d's hold: %v", events[i], o)
		}
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE bookings SET expires_at = now() - interval '1 second' WHERE booking_status = 'pending'`); err != nil {
		t.Fatal(err)
	}
	res, err := s.SweepExpired(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.DB().GetContext(ctx, &left, `SELECT count(*) FROM bookings WHERE booking_status = 'pending'`); err != nil {
		t.Fatal(err)
	}
	if res.Expired != n || left != 0 {
		t.Fatalf("one sweep expired %d of %d lapsed holds, %d left pending", res.Expired, n, left)
	}
}

package store_test

import (
	"context"
	"testing"
	"time"

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

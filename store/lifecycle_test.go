package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
)

// An extend that arrives while a sweep holds a lapsed hold's row waits for
// it, then finds the hold expired: it never moves the expiry of a hold the
// sweeper has failed, and the stock comes back once.
func TestExtendWaitingOnASweepFindsTheHoldExpired(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 5)
	h := takeHold(t, s, ev, 2, time.Minute)
	lapse(t, s, h.ID)

	ctx := context.Background()
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if n, err := s.SweepBatchTx(ctx, tx, ev, 10); err != nil || n != 1 {
		t.Fatalf("sweep batch: %d %v, want 1", n, err)
	}
	done := make(chan hold.Outcome, 1)
	go func() {
		out, err := s.Extend(ctx, h.ID, time.Minute, time.Hour, nil, noRender)
		if err != nil {
			out.Err = err
		}
		done <- out
	}()
	select {
	case out := <-done:
		t.Fatalf("extend did not wait for the sweep: %+v", out)
	case <-time.After(200 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if out := <-done; !errors.Is(out.Err, hold.ErrExpired) {
		t.Fatalf("extend after the sweep: %+v, want ErrExpired", out)
	}
	if got := stock(t, s, ev); got != 5 {
		t.Fatalf("stock = %d, want 5", got)
	}
	audit(t, s, ev)
}

// A sweep that starts while an extend holds the hold's row skips it (SKIP
// LOCKED) and, once the extend commits, finds it unexpired.
func TestSweepSkipsAHoldBeingExtended(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 5)
	h := takeHold(t, s, ev, 2, time.Minute)
	ctx := context.Background()
	// Lapsing in 300ms; an extend locks it now and holds it past that.
	if _, err := s.DB().ExecContext(ctx, `UPDATE bookings SET expires_at = clock_timestamp() + interval '300 milliseconds' WHERE hold_id = $1`, h.ID); err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if got, err := s.ExtendTx(ctx, tx, h.ID, time.Minute, time.Hour); err != nil || got.Status != hold.StatusPending {
		t.Fatalf("extend: %+v %v", got, err)
	}
	time.Sleep(400 * time.Millisecond)
	res, err := s.SweepExpired(ctx, 10)
	if err != nil || res.Expired != 0 {
		t.Fatalf("sweep while extended: %+v %v, want nothing expired", res, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if res, err := s.SweepExpired(ctx, 10); err != nil || res.Expired != 0 {
		t.Fatalf("sweep after the extend: %+v %v, want nothing expired", res, err)
	}
	got, err := s.Hold(ctx, h.ID)
	if err != nil || got.Status != hold.StatusPending {
		t.Fatalf("hold after: %+v %v, want pending", got, err)
	}
	audit(t, s, ev)
}

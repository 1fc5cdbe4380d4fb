package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/sale"
)

func TestQueueStockReadsWhatTheAdmissionStepNeeds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 20)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.DB().ExecContext(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	insert := func(place string, qty int, expires string, created string) {
		t.Helper()
		exec(`INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at, queue_place, created_at)
			VALUES ($1, 'a@example.com', $2, 1, 'pending', now() + $3::interval, nullif($4, ''), now() + $5::interval)`, ev, qty, expires, place, created)
	}
	insert("p-live", 2, "10 minutes", "0 s")         // a live hold of a place
	insert("p-lapsed", 3, "-1 second", "0 s")        // lapsed, not swept: its 3 count back
	insert("", 1, "10 minutes", "0 s")               // a live hold without a queue
	insert("p-old", 1, "10 minutes", "-30 seconds")  // booked before the window: a step saw it then
	insert("p-early", 1, "10 minutes", "-5 seconds") // in the window
	insert("p-sold", 4, "10 minutes", "0 s")         // then confirmed
	exec(`UPDATE bookings SET booking_status = 'confirmed', confirmed_at = now() WHERE queue_place = 'p-sold'`)
	st, avg, err := s.QueueStock(context.Background(), ev, 10*time.Minute, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	// 20 - 2 - 3 - 1 - 1 - 1 - 4 = 8 left, and the lapsed 3 back: 11.
	if st.Available != 11 || st.Pending != 4 {
		t.Fatalf("available %d, pending %d; want 11 and 4", st.Available, st.Pending)
	}
	slices.Sort(st.Took)
	if want := []string{"p-early", "p-lapsed", "p-live", "p-sold"}; !slices.Equal(st.Took, want) {
		t.Fatalf("took %v, want %v", st.Took, want)
	}
	if avg != 2 {
		t.Fatalf("average quantity %v, want 2", avg)
	}
	// The next reading, after a step applied this one, lists only what was
	// booked since a second before it: not p-early again, but the holds
	// made about when it was read (their transactions may have committed
	// after it) and a new one.
	insert("p-new", 1, "10 minutes", "0 s")
	next, _, err := s.QueueStock(context.Background(), ev, 10*time.Minute, st.ReadAt, false)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(next.Took)
	if want := []string{"p-lapsed", "p-live", "p-new", "p-sold"}; !slices.Equal(next.Took, want) {
		t.Fatalf("took after a reading %v, want %v", next.Took, want)
	}
	if st.SoldOut() {
		t.Fatal("sold out with holds pending")
	}
	if _, _, err := s.QueueStock(context.Background(), ev+1000000, time.Minute, 0, false); !errors.Is(err, sale.ErrEventNotFound) {
		t.Fatalf("no such event: %v, want %v", err, sale.ErrEventNotFound)
	}
}

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
	insert("p-live", 2, "10 minutes", "0 s")        // a live hold of a place
	insert("p-lapsed", 3, "-1 second", "0 s")       // lapsed, not swept: its 3 count back
	insert("", 1, "10 minutes", "0 s")              // a live hold without a queue
	insert("p-old", 1, "10 minutes", "-30 seconds") // booked before the window: a step saw it then
	insert("p-sold", 4, "10 minutes", "0 s")        // then confirmed
	exec(`UPDATE bookings SET booking_status = 'confirmed', confirmed_at = now() WHERE queue_place = 'p-sold'`)
	st, avg, err := s.QueueStock(context.Background(), ev, 10*time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	// 20 - 2 - 3 - 1 - 1 - 4 = 9 left, and the lapsed 3 back: 12.
	if st.Available != 12 || st.Pending != 3 {
		t.Fatalf("available %d, pending %d; want 12 and 3", st.Available, st.Pending)
	}
	slices.Sort(st.Took)
	if want := []string{"p-lapsed", "p-live", "p-sold"}; !slices.Equal(st.Took, want) {
		t.Fatalf("took %v, want %v", st.Took, want)
	}
	if avg != 2.2 {
		t.Fatalf("average quantity %v, want 2.2", avg)
	}
	if st.SoldOut() {
		t.Fatal("sold out with holds pending")
	}
	if _, _, err := s.QueueStock(context.Background(), ev+1000000, time.Minute, false); !errors.Is(err, sale.ErrEventNotFound) {
		t.Fatalf("no such event: %v, want %v", err, sale.ErrEventNotFound)
	}
}

package store_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Rows that refer to an event that does not exist, or to none, are found
// when every event is checked: booking_items and bookings have no foreign
// keys since schema/020, and a replica session skips the triggers that
// keep them whole. Each is reported in a row of its own after the events.
func TestAuditReportsWhatRefersToNoEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	corrupt(t, s, `INSERT INTO bookings (event_id, user_email, buyer_key, quantity, total_amount, booking_status)
			VALUES (2147483000, 'a@example.com', 'a@example.com', 1, 10, 'confirmed')`)
	corrupt(t, s, `INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES (2147483000, 2147483000, 1, 10)`)
	audits, err := s.Audit(ctx, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]string{}
	for _, a := range audits {
		got[a.ID] = a.Summary()
	}
	for id, want := range map[int64]string{
		ev:         "ok",
		2147483000: "VIOLATION: no such event; 1 bookings of this event, which does not exist",
		0:          "VIOLATION: 1 booking items of no booking; 1 booking items of no category",
	} {
		if !strings.HasPrefix(got[id], want) {
			t.Errorf("event %d: %q, want %q", id, got[id], want)
		}
	}
	if len(audits) != 3 {
		t.Errorf("%d rows, want 3: %+v", len(audits), audits)
	}
}

// An item added by hand to a live booking, in a replica session (which
// skips the trigger that refuses it since 029): `holdfast check` reports
// the booking whose items no longer add up to it.
func TestAuditReportsABookingWhoseItemsDoNotAddUp(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 100)
	h := takeHold(t, s, ev, 2, time.Minute)
	vip := addCategory(t, s, ev, "VIP", "50.00", 10)
	if a, err := s.Audit(ctx, []int64{ev}, time.Second); err != nil || a[0].Summary() != "ok" {
		t.Fatalf("before: %+v %v", a, err)
	}
	// The items' trigger refuses it (an item is made with its booking,
	// 029); a replica session skips it.
	corrupt(t, s, `INSERT INTO booking_items (booking_id, category_id, quantity, price) SELECT id, $2, 7, 50 FROM bookings WHERE hold_id = $1`,
		h.ID, vip)
	a, err := s.Audit(ctx, []int64{ev}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := a[0].Summary(); !strings.Contains(got, "1 live bookings whose items do not add up to their quantity") {
		t.Fatalf("after an item was added by hand: %q", got)
	}
}

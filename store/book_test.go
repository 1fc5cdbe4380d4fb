package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/sale"
)

// /book/safe takes its tickets through hold_batch and confirms the hold in
// the same transaction. What it answers and what it leaves must stay what
// the seed's direct insert answered and left: the booking id is the
// bookings row's id, the remaining stock is the event's after the sale, and
// the row is a confirmed booking with no expiry.
func TestBookLockedAnswersAndLeavesASeedBooking(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 5)
	out, err := s.BookLocked(ctx, sale.Order{EventID: ev, Email: "ada@example.com", Quantity: 2}, 10*time.Millisecond, nil, nil)
	if err != nil || out.Err != nil {
		t.Fatalf("BookLocked: %v %v", err, out.Err)
	}
	b := out.Booking
	var row struct {
		EventID   int64          `db:"event_id"`
		Email     string         `db:"user_email"`
		Quantity  int            `db:"quantity"`
		Total     string         `db:"total_amount"`
		Status    string         `db:"booking_status"`
		ExpiresAt sql.NullTime   `db:"expires_at"`
		Confirmed sql.NullTime   `db:"confirmed_at"`
		Key       sql.NullString `db:"buyer_key"`
	}
	err = s.DB().GetContext(ctx, &row, `SELECT event_id, user_email, quantity, total_amount::text, booking_status,
		expires_at, confirmed_at, buyer_key FROM bookings WHERE id = $1`, b.BookingID)
	if err != nil {
		t.Fatalf("booking_id %d is no bookings.id: %v", b.BookingID, err)
	}
	if row.EventID != ev || row.Email != "ada@example.com" || row.Quantity != 2 || row.Total != "24.68" ||
		row.Status != "confirmed" || row.ExpiresAt.Valid || row.Confirmed.Valid || row.Key.String != sale.BuyerKey("ada@example.com") {
		t.Fatalf("the booking row is %+v", row)
	}
	want := booking.Booking{BookingID: b.BookingID, EventID: ev, UserEmail: "ada@example.com", Quantity: 2,
		TotalAmount: 2468, RemainingTickets: 3, Message: booking.SafeMessage}
	if b != want {
		t.Fatalf("got %+v, want %+v", b, want)
	}
	if got := stock(t, s, ev); got != 3 {
		t.Fatalf("stock %d, want 3", got)
	}
	audit(t, s, ev)
}

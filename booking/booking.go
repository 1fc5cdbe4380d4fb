package booking

import (
	"context"
	"log/slog"
	"time"

	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/sale"
)

// Booking is the answer to /book/*: tickets confirmed at once.
type Booking struct {
	BookingID        int64       `json:"booking_id"`
	EventID          int64       `json:"event_id"`
	UserEmail        string      `json:"user_email"`
	Quantity         int         `json:"quantity"`
	TotalAmount      money.Cents `json:"total_amount"`
	RemainingTickets int         `json:"remaining_tickets"`
	Message          string      `json:"message"`
}

// Store is what the booking services need from storage.
type Store interface {
	// Events returns up to limit events with id > after, in id order.
	Events(ctx context.Context, after int64, limit int) ([]sale.Event, error)
	Event(ctx context.Context, id int64) (sale.Event, error)
	// BookUnsafe is the seed's check-then-insert without a lock, with work
	// slept between the check and the insert.
	BookUnsafe(ctx context.Context, o sale.Order, work time.Duration) (Booking, error)
	// BookLocked locks the event row, sleeps work, checks and inserts a
	// confirmed booking, in one transaction together with the response kept
	// for key (when not nil), rendered by render.
	BookLocked(ctx context.Context, o sale.Order, work time.Duration, key *idempotency.Key, render Render) (Outcome, error)
	// Replay returns the response kept for key, nil if there is none, or
	// idempotency.ErrMismatch if the key was used with other values.
	Replay(ctx context.Context, key *idempotency.Key) (*idempotency.Response, error)
}

// Outcome is what a booking request came to: a booking or an error of the
// client's (sold out, no such event), or the response kept for its
// idempotency key, to replay.
type Outcome struct {
	Booking Booking
	Err     error
	Replay  *idempotency.Response
}

// Render turns an outcome into the response kept for its idempotency key.
type Render func(Booking, error) idempotency.Response

// SafeMessage is the message of a booking made by /book/safe.
const SafeMessage = "Booking confirmed"

// Service books tickets.
type Service struct {
	Store Store
	Locks sale.Locker
	// Work is the seed's artificial processing delay (--simulate-work).
	Work time.Duration
	// Passes checks the Queue-Pass of a /book/safe request; nil takes no
	// pass, so a queued event refuses every booking.
	Passes pass.Verifier
	// Places, when set, is told of every booking made with a pass
	// (sale.MarkDone): a booking is a confirmed purchase.
	Places sale.PlaceMarker
	// Log reports a place that could not be marked done.
	Log *slog.Logger
}

// BookUnsafe books without any lock; it can oversell.
func (s *Service) BookUnsafe(ctx context.Context, o sale.Order) (Booking, error) {
	b, err := s.Store.BookUnsafe(ctx, o, s.Work)
	if err != nil {
		return Booking{}, err
	}
	b.Message = "Booking confirmed (UNSAFE VERSION - may have race conditions)"
	return b, nil
}

// BookSafe books under the event's lock; it never oversells. A request
// with an idempotency key seen before replays the first response.
func (s *Service) BookSafe(ctx context.Context, o sale.Order, key *idempotency.Key, render Render) (Outcome, error) {
	if key != nil {
		// A key seen before replays without queueing for the event's lock.
		replay, err := s.Store.Replay(ctx, key)
		if err != nil || replay != nil {
			return Outcome{Replay: replay}, err
		}
	}
	unlock, err := s.Locks.Lock(ctx, o.EventID)
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	out, err := s.Store.BookLocked(ctx, o, s.Work, key, render)
	if err == nil && out.Err == nil && out.Replay == nil {
		sale.MarkDone(ctx, s.Places, o.Pass.Place, s.Log)
	}
	return out, err
}

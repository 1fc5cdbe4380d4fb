package booking

import (
	"context"
	"errors"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
)

// Errors the booking services return. Each is a *problem.Error, which
// internal/httpapi answers as the contract says.
var (
	ErrEventNotFound = problem.New(problem.NotFound, "no such event")
	// ErrSoldOut: the stock is short. /book/* answers it 400, as in the
	// seed (see bookStatuses), POST /holds 409.
	ErrSoldOut = problem.New(problem.SoldOut, "not enough tickets available")
	// ErrLimitExceeded: the buyer would hold or own more of the event's
	// tickets than one buyer may (--max-tickets-per-user).
	ErrLimitExceeded = problem.New(problem.LimitExceeded, "this buyer already holds or owns as many tickets of this event as one buyer may")
	// ErrClientLimitExceeded: the client address would hold more of the
	// event's tickets at once than one address may
	// (--max-tickets-per-client).
	ErrClientLimitExceeded = problem.New(problem.LimitExceeded, "this address already holds as many tickets of this event as one address may")
	// ErrBusy: the event's lock was not had within the lock wait.
	ErrBusy = problem.New(problem.Busy, "the event is busy, please try again")
	// ErrUnavailable: PostgreSQL cannot be reached, or a deadlock or
	// serialization failure persisted after retries.
	ErrUnavailable = problem.New(problem.Unavailable, "the service is unavailable, please try again")
	// ErrNotOnSale: the event's on_sale_at has not come yet, by the
	// database's clock.
	ErrNotOnSale = problem.New(problem.NotOnSale, "this event is not on sale yet")
	// ErrSaleClosed: the event's off_sale_at has passed, by the database's
	// clock.
	ErrSaleClosed = problem.New(problem.SaleClosed, "the sale of this event has closed")
)

// SaleErr is the error of a sale window's verdict as the store reads it
// ("not_on_sale", "sale_closed"), nil for "" (on sale).
func SaleErr(verdict string) error {
	switch verdict {
	case problem.NotOnSale.String():
		return ErrNotOnSale
	case problem.SaleClosed.String():
		return ErrSaleClosed
	}
	return nil
}

// IsSaleErr reports whether err is a sale window's refusal.
func IsSaleErr(err error) bool {
	return errors.Is(err, ErrNotOnSale) || errors.Is(err, ErrSaleClosed)
}

// Event is a thing with a limited stock of tickets.
type Event struct {
	ID               int64       `json:"id"`
	Name             string      `json:"name"`
	Description      string      `json:"description"`
	EventDate        time.Time   `json:"event_date"`
	TotalTickets     int         `json:"total_tickets"`
	AvailableTickets int         `json:"available_tickets"`
	TicketPrice      money.Cents `json:"ticket_price"`
	// OnSaleAt and OffSaleAt bound the sale window; nil: on sale now,
	// never closes.
	OnSaleAt  *time.Time `json:"on_sale_at"`
	OffSaleAt *time.Time `json:"off_sale_at"`
	// Queue is the event's waiting room; nil: none.
	Queue *QueueSettings `json:"queue"`
}

// QueueSettings configure an event's waiting room.
type QueueSettings struct {
	// AdmitPerSecond is how many places the queue admits a second, on
	// average, across all instances.
	AdmitPerSecond int `json:"admit_per_second"`
	// PassTTL is how long an admitted place's pass takes holds.
	PassTTL Seconds `json:"pass_ttl"`
}

// Seconds is a whole number of seconds that reads and writes JSON as a
// duration string such as "10m", "90s" or "1h".
type Seconds int

// Duration is s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// MarshalJSON writes the shortest of "Nh", "Nm" or "Ns".
func (s Seconds) MarshalJSON() ([]byte, error) {
	var text string
	switch {
	case s != 0 && s%3600 == 0:
		text = strconv.Itoa(int(s/3600)) + "h"
	case s != 0 && s%60 == 0:
		text = strconv.Itoa(int(s/60)) + "m"
	default:
		text = strconv.Itoa(int(s)) + "s"
	}
	return []byte(`"` + text + `"`), nil
}

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

// Order is a validated request for tickets.
type Order struct {
	EventID int64 `json:"event_id"`
	// Email is in Unicode NFC, as it is stored.
	Email    string `json:"user_email"`
	Quantity int    `json:"quantity"`
	// Pass is what the request's Queue-Pass came to, for a queued event.
	// It is no part of the order's values an idempotency key is hashed
	// over: a key names the order, whichever pass it came with.
	Pass pass.Gate `json:"-"`
	// Client is the address the request came from (see package
	// clientaddr), for the per-client cap; the zero Addr when unknown. It
	// is no part of the request's values: a retry from another address is
	// the same request.
	Client netip.Addr `json:"-"`
}

// Request is the JSON body of /book/* and POST /holds, as sent. Its fields
// are loose on purpose so that every mistake gets a precise message from
// Order instead of a generic decoding error.
type Request struct {
	EventID   httpapi.Int `json:"event_id"`
	UserEmail *string     `json:"user_email"`
	Quantity  httpapi.Int `json:"quantity"`
}

// MaxEmailLength is the longest address accepted (RFC 5321's path limit).
const MaxEmailLength = 254

// Order validates r, allowing at most maxQuantity tickets.
func (r Request) Order(maxQuantity int) (Order, error) {
	switch {
	case !r.EventID.Set:
		return Order{}, problem.Invalidf("event_id is required")
	case r.EventID.N <= 0:
		return Order{}, problem.Invalidf("event_id must be a positive integer")
	case r.UserEmail == nil:
		return Order{}, problem.Invalidf("user_email is required")
	case !r.Quantity.Set:
		return Order{}, problem.Invalidf("quantity is required")
	case r.Quantity.N < 1 || r.Quantity.N > int64(maxQuantity):
		return Order{}, problem.Invalidf("quantity must be between 1 and %d", maxQuantity)
	}
	email, err := NormalizeEmail(*r.UserEmail)
	if err != nil {
		return Order{}, err
	}
	return Order{EventID: r.EventID.N, Email: email, Quantity: int(r.Quantity.N)}, nil
}

// NormalizeEmail validates a bare address ("a@example.com") of at most
// MaxEmailLength characters (after NFC, characters rather than bytes: RFC
// 6532 counts them so) and returns it in Unicode NFC, the form it is stored
// in. Invalid UTF-8 and any control or format character (categories Cc and
// Cf: NUL, U+0085, zero-width spaces and joiners, bidi controls, the soft
// hyphen, the BOM) are refused: they make one address look like another, or
// like nothing, and PostgreSQL could not store a NUL.
func NormalizeEmail(s string) (string, error) {
	bad := problem.Invalidf("user_email must be a bare email address such as a@example.com")
	if s == "" {
		return "", problem.Invalidf("user_email is required")
	}
	// A JSON decoder turns invalid UTF-8 into U+FFFD, which no address
	// holds: refused in either form, whichever decoder read the body.
	if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) {
		return "", problem.Invalidf("user_email is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf) {
			return "", problem.Invalidf("user_email must not hold control or format characters (such as U+%04X)", r)
		}
	}
	// NFC can lengthen or shorten a string; the limit is on what is stored.
	s = norm.NFC.String(s)
	if utf8.RuneCountInString(s) > MaxEmailLength {
		return "", problem.Invalidf("user_email is longer than %d characters", MaxEmailLength)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s || strings.ContainsAny(s, " \t\r\n<>()\"") {
		return "", bad
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", bad
	}
	return s, nil
}

// ValidEmail reports whether s is an address NormalizeEmail accepts.
func ValidEmail(s string) error {
	_, err := NormalizeEmail(s)
	return err
}

// BuyerKey is the form in which the per-buyer cap compares emails: the
// NFKC case folding of email (Unicode's compatibility caseless match,
// D145), so that no spelling of one address (capitals, NFC or NFD, a
// full-width letter, ß or ss) counts as another buyer. It is the one
// implementation of that rule: the store writes it beside every booking it
// makes, and the database counts by it.
func BuyerKey(email string) string {
	// A Caser keeps state: one per call, never shared between goroutines.
	fold := cases.Fold()
	return norm.NFKC.String(fold.String(norm.NFKD.String(fold.String(norm.NFD.String(email)))))
}

// Store is what the booking services need from storage.
type Store interface {
	// Events returns up to limit events with id > after, in id order.
	Events(ctx context.Context, after int64, limit int) ([]Event, error)
	Event(ctx context.Context, id int64) (Event, error)
	// BookUnsafe is the seed's check-then-insert without a lock, with work
	// slept between the check and the insert.
	BookUnsafe(ctx context.Context, o Order, work time.Duration) (Booking, error)
	// BookLocked locks the event row, sleeps work, checks and inserts a
	// confirmed booking, in one transaction together with the response kept
	// for key (when not nil), rendered by render.
	BookLocked(ctx context.Context, o Order, work time.Duration, key *idempotency.Key, render Render) (Outcome, error)
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

// Locker hands out the per-event lock that keeps buyers of one event from
// piling onto its row. Lock returns ErrBusy when the lock was not had within
// its wait; when the lock service itself is down it returns a no-op unlock
// and no error, since the row lock alone keeps sales correct.
type Locker interface {
	Lock(ctx context.Context, eventID int64) (unlock func(), err error)
}

// Service books tickets.
type Service struct {
	Store Store
	Locks Locker
	// Work is the seed's artificial processing delay (--simulate-work).
	Work time.Duration
	// Passes checks the Queue-Pass of a /book/safe request; nil takes no
	// pass, so a queued event refuses every booking.
	Passes pass.Verifier
}

// BookUnsafe books without any lock; it can oversell.
func (s *Service) BookUnsafe(ctx context.Context, o Order) (Booking, error) {
	b, err := s.Store.BookUnsafe(ctx, o, s.Work)
	if err != nil {
		return Booking{}, err
	}
	b.Message = "Booking confirmed (UNSAFE VERSION - may have race conditions)"
	return b, nil
}

// BookSafe books under the event's lock; it never oversells. A request
// with an idempotency key seen before replays the first response.
func (s *Service) BookSafe(ctx context.Context, o Order, key *idempotency.Key, render Render) (Outcome, error) {
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
	return s.Store.BookLocked(ctx, o, s.Work, key, render)
}

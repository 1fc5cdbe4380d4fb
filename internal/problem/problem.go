package problem

import (
	"fmt"
)

// Kind is what sort of refusal an error is. The zero Kind is none: an
// *Error carrying it answers as a fault of ours.
type Kind int

// The kinds of the contract.
const (
	_ Kind = iota
	// Invalid: the request itself is malformed or out of range.
	Invalid
	// NotFound: no such event, hold or place.
	NotFound
	// SoldOut: the stock is short of the request.
	SoldOut
	// Busy: try again soon (a lock not had in time, a client over its rate).
	Busy
	// Unavailable: a component we need is down, or we are shutting down.
	Unavailable
	// LimitExceeded: a per-buyer or per-client cap would be passed.
	LimitExceeded
	// HoldExpired, HoldReleased and HoldConfirmed: the hold's state forbids
	// the request.
	HoldExpired
	HoldReleased
	HoldConfirmed
	// IdempotencyMismatch: a key was used before with other values.
	IdempotencyMismatch
	// Unauthorized: an admin request without a good token.
	Unauthorized
	// TotalBelowHeld: an event's total would go below what is held and sold.
	TotalBelowHeld
	// QueueRequired, PassInvalid, PassExpired and PassUsed: a queued
	// event's refusals of a request without a good pass.
	QueueRequired
	PassInvalid
	PassExpired
	PassUsed
	// NotOnSale and SaleClosed: the request came outside the sale window.
	NotOnSale
	SaleClosed
	// ExtendLimit: the hold already lasts as long as --hold-max allows.
	ExtendLimit
	// HoldCancelled: the booking was cancelled (refunded), so the request
	// has nothing to act on.
	HoldCancelled
	// HoldNotConfirmed: cancel refunds a confirmed booking; a pending hold
	// has nothing to refund (its buyer releases it).
	HoldNotConfirmed
	// CategoryRequired: the seed's body (a quantity alone) for an event of
	// several categories, which must name them.
	CategoryRequired
	// SeatTaken: a seat asked for by name is held or sold.
	SeatTaken
	// SeatMapInUse: an event's seat map cannot change while any of its
	// tickets are held or sold.
	SeatMapInUse
)

var names = [...]string{
	Invalid:             "invalid_request",
	NotFound:            "not_found",
	SoldOut:             "sold_out",
	Busy:                "busy",
	Unavailable:         "unavailable",
	LimitExceeded:       "limit_exceeded",
	HoldExpired:         "hold_expired",
	HoldReleased:        "hold_released",
	HoldConfirmed:       "hold_confirmed",
	IdempotencyMismatch: "idempotency_mismatch",
	Unauthorized:        "unauthorized",
	TotalBelowHeld:      "total_below_held",
	QueueRequired:       "queue_required",
	PassInvalid:         "pass_invalid",
	PassExpired:         "pass_expired",
	PassUsed:            "pass_used",
	NotOnSale:           "not_on_sale",
	SaleClosed:          "sale_closed",
	ExtendLimit:         "extend_limit",
	HoldCancelled:       "hold_cancelled",
	HoldNotConfirmed:    "hold_not_confirmed",
	CategoryRequired:    "category_required",
	SeatTaken:           "seat_taken",
	SeatMapInUse:        "seat_map_in_use",
}

// Kinds lists every kind, for tests that check a map covers them all.
func Kinds() []Kind {
	ks := make([]Kind, 0, len(names)-1)
	for k := range names[1:] {
		ks = append(ks, Kind(k+1))
	}
	return ks
}

// String is the kind's name, the one logs show (the contract's codes are
// spelled alike, but httpapi owns those).
func (k Kind) String() string {
	if k > 0 && int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error makes a Kind a target for errors.Is: errors.Is(err, problem.Invalid)
// reports whether err is an *Error of that kind.
func (k Kind) Error() string { return k.String() }

// Error is a refusal: a kind and a message a client may read.
type Error struct {
	Kind Kind
	Msg  string
}

// New returns an *Error of kind k with message msg.
func New(k Kind, msg string) *Error { return &Error{Kind: k, Msg: msg} }

// Errorf returns an *Error of kind k with a formatted message.
func Errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Invalidf is shorthand for an Invalid error with a formatted message.
func Invalidf(format string, args ...any) *Error { return Errorf(Invalid, format, args...) }

func (e *Error) Error() string { return e.Kind.String() + ": " + e.Msg }

// Is reports whether target is e's Kind, so that errors.Is(err, k) finds an
// error of kind k anywhere in err's chain.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

package pass

import (
	"errors"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

// Header is the request header that carries a pass.
const Header = "Queue-Pass"

// Errors a queued event answers a hold or booking with. Verify wraps
// ErrInvalid and ErrExpired with its reason, which clients never see.
var (
	// ErrRequired: the event has a queue and the request carried no pass.
	ErrRequired = problem.New(problem.QueueRequired, "this event has a waiting room: join its queue and send the pass in the Queue-Pass header")
	// ErrInvalid: the pass is malformed, not signed by a key of ours, or
	// made for another event or another email.
	ErrInvalid = problem.New(problem.PassInvalid, "the Queue-Pass is not a valid pass for this event and email")
	// ErrExpired: the pass was good, and its time is up.
	ErrExpired = problem.New(problem.PassExpired, "the Queue-Pass has expired")
	// ErrUsed: the pass's buyer already confirmed a hold made with it.
	ErrUsed = problem.New(problem.PassUsed, "the Queue-Pass was used: its buyer confirmed a hold made with it")
)

// Verifier checks passes.
type Verifier interface {
	// Verify returns the claims of a good token, or an error wrapping
	// ErrInvalid or ErrExpired.
	Verify(token string) (Claims, error)
}

// Gate is what a request's Queue-Pass came to, checked against the
// request's event and email. Whether the event needs a pass at all is the
// database's to say, inside the statement that grants the hold; a Gate
// only carries what that statement needs: the admitted place, or why there
// is none.
type Gate struct {
	// Place is the admitted place of a pass good for the request; "" when
	// no good pass was sent.
	Place string
	// Err is why a pass that was sent is no good (ErrInvalid, ErrExpired);
	// nil when none was sent or it is good.
	Err error
	// Expires is when the good pass stops taking holds (zero without
	// one): a request that waited in a queue or for a lock is checked
	// again just before its statement (Lapsed).
	Expires time.Time
}

// Lapsed is g as it stands at now: a good pass that has expired since it
// was checked is ErrExpired, like one that came expired.
func (g Gate) Lapsed(now time.Time) Gate {
	if g.Place != "" && !g.Expires.IsZero() && !now.Before(g.Expires) {
		return Gate{Err: ErrExpired}
	}
	return g
}

// Check verifies token (the Queue-Pass header's value, "" when absent) for
// a request for eventID by email. The email is compared as the order
// carries it, after the hold rules' validation, with the pass's, exactly:
// a pass takes holds for the email it was admitted with and for no other
// spelling of it. A nil v takes no pass.
func Check(v Verifier, token string, eventID int64, email string) Gate {
	if token == "" {
		return Gate{}
	}
	if v == nil {
		return Gate{Err: ErrInvalid}
	}
	c, err := v.Verify(token)
	switch {
	case err != nil:
		return Gate{Err: err}
	case c.EventID != eventID, c.Email != email:
		return Gate{Err: ErrInvalid}
	}
	return Gate{Place: c.PlaceID, Expires: c.ExpiresAt}
}

// Refusal is the error a queued event answers a request without a good
// pass with: why its pass is no good, or ErrRequired when it sent none.
func (g Gate) Refusal() error {
	if g.Err != nil {
		return g.Err
	}
	return ErrRequired
}

// IsRefusal reports whether err is one of a queued event's refusals: a
// request's own outcome, answered 403, never a failure of the service.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrRequired) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrExpired) || errors.Is(err, ErrUsed)
}

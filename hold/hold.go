package hold

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// Status is a hold's state as the API reports it.
type Status string

// The statuses of the contract. The database knows pending, confirmed and
// failed; released, expired and cancelled are failed with their reason, and
// a pending hold past its expiry reads expired at once.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusReleased  Status = "released"
	StatusExpired   Status = "expired"
	StatusCancelled Status = "cancelled"
)

// Errors the hold service returns; each answers as the contract says.
var (
	ErrNotFound  = problem.New(problem.NotFound, "no such hold")
	ErrExpired   = problem.New(problem.HoldExpired, "the hold has expired")
	ErrReleased  = problem.New(problem.HoldReleased, "the hold was released")
	ErrConfirmed = problem.New(problem.HoldConfirmed, "the hold is confirmed and cannot be released")
	// ErrConfirmedNoExtend: a confirmed hold has no expiry left to move.
	ErrConfirmedNoExtend = problem.New(problem.HoldConfirmed, "the hold is confirmed and cannot be extended")
	// ErrExtendLimit: the hold already expires --hold-max after it was
	// made, the latest it may.
	ErrExtendLimit = problem.New(problem.ExtendLimit, "the hold cannot be extended further: it already lasts as long as a hold may")
	// ErrCancelled: the booking was cancelled and refunded.
	ErrCancelled = problem.New(problem.HoldCancelled, "the booking was cancelled")
	// ErrNotConfirmed: only a confirmed booking can be cancelled; a
	// pending hold is released by its buyer instead.
	ErrNotConfirmed = problem.New(problem.HoldNotConfirmed, "only a confirmed booking can be cancelled; a pending hold is released with DELETE /holds/{id}")
)

// Hold is tickets set aside for one buyer until ExpiresAt.
type Hold struct {
	ID          uuid.UUID   `json:"id"`
	EventID     int64       `json:"event_id"`
	UserEmail   string      `json:"user_email"`
	Quantity    int         `json:"quantity"`
	TotalAmount money.Cents `json:"total_amount"`
	Status      Status      `json:"status"`
	ExpiresAt   time.Time   `json:"expires_at"`
	CreatedAt   time.Time   `json:"created_at"`
	ConfirmedAt *time.Time  `json:"confirmed_at"`
	// Items are the hold's tickets by category; TotalAmount is the sum of
	// their amounts.
	Items []Item `json:"items"`
	// Seats are a seated hold's seats, in the map's order; omitted for a
	// hold of tickets without seats. They stay readable after the hold
	// ends.
	Seats []string `json:"seats,omitempty"`
	// Place is the waiting room place whose pass took the hold, "" for
	// none. It is never shown: a place id is the key to the place.
	Place string `json:"-"`
}

// Item is a hold's tickets of one category, at the category's price when
// it was granted.
type Item struct {
	CategoryID int64       `json:"category_id"`
	Quantity   int         `json:"quantity"`
	Price      money.Cents `json:"price"`
	Amount     money.Cents `json:"amount"`
}

// Request is one buyer's request for a hold, as the store takes it: the
// order and, when the client sent one, its idempotency key.
type Request struct {
	Order sale.Order
	Key   *idempotency.Key
}

// Outcome is what one Request came to: a hold or an error, and, when the
// request had a key that was used before, the response to replay instead.
type Outcome struct {
	Hold   Hold
	Err    error
	Replay *idempotency.Response
}

// Render turns an outcome into the response kept for its idempotency key.
type Render func(Hold, error) idempotency.Response

// Store is what the hold service needs from storage.
type Store interface {
	// CreateHolds serves requests for one event, in order, in one
	// transaction that locks the event row: each either gets a pending
	// hold lasting ttl or an error of its own. If the stock is short it
	// first expires the event's lapsed holds. It returns one outcome per
	// request, or an error when the whole transaction failed.
	CreateHolds(ctx context.Context, eventID int64, reqs []Request, ttl time.Duration, render Render) ([]Outcome, error)
	// Hold reads a hold by id.
	Hold(ctx context.Context, id uuid.UUID) (Hold, error)
	// Confirm confirms a pending hold whose expiry has not passed by the
	// database's clock; see Service.Confirm.
	Confirm(ctx context.Context, id uuid.UUID, key *idempotency.Key, render Render) (Outcome, error)
	// Release fails a pending hold as released; see Service.Release.
	Release(ctx context.Context, id uuid.UUID) (Hold, error)
	// Extend moves a pending, unexpired hold's expiry to ttl from now by
	// the database's clock, but never past max after the hold was made;
	// see Service.Extend.
	Extend(ctx context.Context, id uuid.UUID, ttl, max time.Duration, key *idempotency.Key, render Render) (Outcome, error)
	// Cancel fails a confirmed booking as cancelled; see Service.Cancel.
	Cancel(ctx context.Context, id uuid.UUID) (Hold, error)
	// Replay returns the response kept for key, nil if there is none, or
	// idempotency.ErrMismatch if the key was used with other values.
	Replay(ctx context.Context, key *idempotency.Key) (*idempotency.Response, error)
}

// EventBatch is one event's requests, in their order of arrival.
type EventBatch struct {
	EventID int64
	Reqs    []Request
}

// EventsStore is a Store that can serve the batches of several events in
// one call. The Batcher uses it when its Store has it.
type EventsStore interface {
	// CreateHoldsEvents serves batches of several events in one
	// transaction: each event's requests in order, each answered as
	// CreateHolds would, the responses for idempotency keys rendered by
	// render. It waits for no event's row: a batch whose event row
	// another transaction holds is not served and gets nil outcomes, for
	// the caller to serve it with CreateHolds. It returns one slice of
	// outcomes per batch, or an error when the whole call failed.
	CreateHoldsEvents(ctx context.Context, batches []EventBatch, ttl time.Duration, render Render) ([][]Outcome, error)
}

// Service takes, confirms and releases holds.
type Service struct {
	Store Store
	Locks sale.Locker
	TTL   time.Duration
	// Max is how long after it was made a hold may last at most, however
	// often it is extended (--hold-max); at least TTL.
	Max time.Duration
	// Batcher, when set, serves hold requests per event in batches; nil
	// means one transaction per hold.
	Batcher *Batcher
	// Passes checks the Queue-Pass of a hold request; nil takes no pass,
	// so a queued event refuses every hold.
	Passes pass.Verifier
	// Places, when set, is told of every confirmed hold made with a pass
	// (sale.MarkDone).
	Places sale.PlaceMarker
	// Log reports a place that could not be marked done.
	Log *slog.Logger
}

// Create takes a hold. Its idempotency key, if any, is honoured.
func (s *Service) Create(ctx context.Context, req Request) (Outcome, error) {
	if s.Batcher != nil {
		// The batch claims the keys of its requests and answers a key
		// seen before with its replay (store.CreateHolds): a lookup
		// here first was a round trip for every keyed request, nearly
		// all of them first tries that find nothing, and cost a keyed
		// batch more than the hold itself (BENCHMARKS.md, "Holds with an
		// Idempotency-Key"). A retry waits for its event's next batch,
		// and shares its fate: a batch that failed (its fresh requests
		// waited out the event row's lock, the queue was full, the
		// service is stopping) would answer a retry busy where its
		// answer is kept, so then the key is looked up after all.
		out, err := s.Batcher.Submit(ctx, req)
		if err != nil && req.Key != nil && ctx.Err() == nil {
			if replay, rerr := s.Store.Replay(ctx, req.Key); replay != nil || errors.Is(rerr, idempotency.ErrMismatch) {
				return Outcome{Replay: replay}, rerr
			}
		}
		return out, err
	}
	if req.Key != nil {
		// A key seen before replays without queueing for the event's lock.
		replay, err := s.Store.Replay(ctx, req.Key)
		if err != nil || replay != nil {
			return Outcome{Replay: replay}, err
		}
	}
	unlock, err := s.Locks.Lock(ctx, req.Order.EventID)
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	outs, err := s.Store.CreateHolds(ctx, req.Order.EventID, []Request{req}, s.TTL, renderCreated)
	if err != nil {
		return Outcome{}, err
	}
	return outs[0], nil
}

// Get reads a hold.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Hold, error) {
	return s.Store.Hold(ctx, id)
}

// Confirm confirms a hold. Again on a confirmed hold it answers the same
// hold; on an expired one ErrExpired, turning it failed first if the sweeper
// has not, so its stock comes back; on a released one ErrReleased.
func (s *Service) Confirm(ctx context.Context, id uuid.UUID, key *idempotency.Key, render Render) (Outcome, error) {
	if key != nil {
		replay, err := s.Store.Replay(ctx, key)
		if err != nil || replay != nil {
			return Outcome{Replay: replay}, err
		}
	}
	out, err := s.Store.Confirm(ctx, id, key, render)
	if err == nil && out.Err == nil {
		sale.MarkDone(ctx, s.Places, out.Hold.Place, s.Log)
	}
	return out, err
}

// Release gives a pending hold's tickets back. On a hold already released
// or expired it answers the hold as it is (a lapsed hold the sweeper has not
// reached yet turns failed as expired); on a confirmed one ErrConfirmed.
func (s *Service) Release(ctx context.Context, id uuid.UUID) (Hold, error) {
	return s.Store.Release(ctx, id)
}

// Extend gives a pending hold more time: its expiry becomes TTL from now,
// never later than Max after the hold was made. A hold whose expiry is
// already that cap gets ErrExtendLimit; one whose next TTL would pass the
// cap is extended up to the cap, so a buyer who keeps extending gets every
// moment Max allows, then ErrExtendLimit. An expired hold gets ErrExpired
// (turned failed first if the sweeper has not, as Confirm does), a released
// one ErrReleased, a confirmed one ErrConfirmedNoExtend, a cancelled one
// ErrCancelled. Its idempotency key, if any, is honoured.
func (s *Service) Extend(ctx context.Context, id uuid.UUID, key *idempotency.Key, render Render) (Outcome, error) {
	if key != nil {
		replay, err := s.Store.Replay(ctx, key)
		if err != nil || replay != nil {
			return Outcome{Replay: replay}, err
		}
	}
	return s.Store.Extend(ctx, id, s.TTL, s.Max, key, render)
}

// Cancel refunds a confirmed booking: it turns failed as cancelled and its
// tickets go back on sale, once. Again on a cancelled booking it answers the
// same booking. A pending hold gets ErrNotConfirmed (its buyer releases it;
// there is nothing to refund), a released one ErrReleased, an expired one
// ErrExpired (a lapsed hold the sweeper has not reached turns failed as
// expired first).
func (s *Service) Cancel(ctx context.Context, id uuid.UUID) (Hold, error) {
	return s.Store.Cancel(ctx, id)
}

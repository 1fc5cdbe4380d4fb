package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

// Error codes of the API contract.
const (
	CodeInvalid             = "invalid_request"
	CodeNotFound            = "not_found"
	CodeSoldOut             = "sold_out"
	CodeBusy                = "busy"
	CodeHoldExpired         = "hold_expired"
	CodeHoldReleased        = "hold_released"
	CodeHoldConfirmed       = "hold_confirmed"
	CodeIdempotencyMismatch = "idempotency_mismatch"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeInternal            = "internal"
	CodeUnavailable         = "unavailable"
	CodeLimitExceeded       = "limit_exceeded"
	CodeUnauthorized        = "unauthorized"
	CodeTotalBelowHeld      = "total_below_held"
	// The waiting room's refusals (see internal/pass).
	CodeQueueRequired    = "queue_required"
	CodePassInvalid      = "pass_invalid"
	CodePassExpired      = "pass_expired"
	CodePassUsed         = "pass_used"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeNotOnSale        = "not_on_sale"
	CodeSaleClosed       = "sale_closed"
	// The refusals of extend and cancel.
	CodeExtendLimit      = "extend_limit"
	CodeHoldCancelled    = "hold_cancelled"
	CodeHoldNotConfirmed = "hold_not_confirmed"
	CodeCategoryRequired = "category_required"
	CodeSeatTaken        = "seat_taken"
	CodeSeatMapInUse     = "seat_map_in_use"
)

// answer is how one kind of error is answered.
type answer struct {
	status int
	code   string
	// retryAfter, when set, becomes the Retry-After header.
	retryAfter time.Duration
}

// byKind is the one map from a domain error's kind to its answer. An
// endpoint whose contract differs passes its own Statuses (see
// WithStatuses).
var byKind = map[problem.Kind]answer{
	problem.Invalid:             {http.StatusBadRequest, CodeInvalid, 0},
	problem.NotFound:            {http.StatusNotFound, CodeNotFound, 0},
	problem.SoldOut:             {http.StatusConflict, CodeSoldOut, 0},
	problem.Busy:                {http.StatusTooManyRequests, CodeBusy, time.Second},
	problem.Unavailable:         {http.StatusServiceUnavailable, CodeUnavailable, time.Second},
	problem.LimitExceeded:       {http.StatusConflict, CodeLimitExceeded, 0},
	problem.HoldExpired:         {http.StatusGone, CodeHoldExpired, 0},
	problem.HoldReleased:        {http.StatusConflict, CodeHoldReleased, 0},
	problem.HoldConfirmed:       {http.StatusConflict, CodeHoldConfirmed, 0},
	problem.IdempotencyMismatch: {http.StatusUnprocessableEntity, CodeIdempotencyMismatch, 0},
	problem.Unauthorized:        {http.StatusUnauthorized, CodeUnauthorized, 0},
	problem.TotalBelowHeld:      {http.StatusConflict, CodeTotalBelowHeld, 0},
	problem.QueueRequired:       {http.StatusForbidden, CodeQueueRequired, 0},
	problem.PassInvalid:         {http.StatusForbidden, CodePassInvalid, 0},
	problem.PassExpired:         {http.StatusForbidden, CodePassExpired, 0},
	problem.PassUsed:            {http.StatusForbidden, CodePassUsed, 0},
	problem.NotOnSale:           {http.StatusForbidden, CodeNotOnSale, 0},
	problem.SaleClosed:          {http.StatusForbidden, CodeSaleClosed, 0},
	problem.ExtendLimit:         {http.StatusConflict, CodeExtendLimit, 0},
	problem.HoldCancelled:       {http.StatusConflict, CodeHoldCancelled, 0},
	problem.HoldNotConfirmed:    {http.StatusConflict, CodeHoldNotConfirmed, 0},
	problem.CategoryRequired:    {http.StatusBadRequest, CodeCategoryRequired, 0},
	problem.SeatTaken:           {http.StatusConflict, CodeSeatTaken, 0},
	problem.SeatMapInUse:        {http.StatusConflict, CodeSeatMapInUse, 0},
}

// Statuses are an endpoint's departures from the usual status of a kind,
// for the few places the contract keeps the seed's choice (sold_out is 400
// on /book/*).
type Statuses map[problem.Kind]int

type statusesKey struct{}

// WithStatuses serves h with s as its endpoint's statuses: WriteError
// answers the kinds s names with s's status.
func WithStatuses(s Statuses, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), statusesKey{}, s)))
	})
}

func statusesOf(ctx context.Context) Statuses {
	s, _ := ctx.Value(statusesKey{}).(Statuses)
	return s
}

// Render is err as a client sees it on an endpoint with statuses s: its
// status and body. An error that is no *problem.Error is a fault of ours:
// ok is false and the answer a 500 "internal error".
func Render(err error, s Statuses) (status int, body ErrorBody, ok bool) {
	a, e, ok := known(err, s)
	if !ok {
		return http.StatusInternalServerError, ErrorBody{Error: "internal error", Code: CodeInternal}, false
	}
	return a.status, ErrorBody{Error: e.Msg, Code: a.code}, true
}

// Code is err's contract code, CodeInternal when it is no *problem.Error.
func Code(err error) string {
	if a, _, ok := known(err, nil); ok {
		return a.code
	}
	return CodeInternal
}

// known returns the answer of the *problem.Error in err's chain, if there
// is one of a kind the map knows.
func known(err error, s Statuses) (answer, *problem.Error, bool) {
	var e *problem.Error
	if !errors.As(err, &e) {
		return answer{}, nil, false
	}
	a, ok := byKind[e.Kind]
	if !ok {
		return answer{}, nil, false
	}
	if st, ok := s[e.Kind]; ok {
		a.status = st
	}
	return a, e, true
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// WriteError answers r with err. A *problem.Error anywhere in err's chain
// is shown as it is, with the status of its kind on r's endpoint; anything
// else is logged with its detail and answered 500 "internal error", so
// nothing internal reaches a client.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	a := Public(r, log, err)
	if a.RetryAfter > 0 {
		secs := int(math.Ceil(a.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	Encode(w, a.Status, ErrorBody{Error: a.Message, Code: a.Code})
}

// Answer is how an error is answered on an endpoint: what WriteError
// writes, for a handler that writes a body of its own (the buyer's HTML
// page).
type Answer struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// Public is the answer a client may see for err on r's endpoint. It logs
// what it hides (the detail of a fault of ours) and notes the code for the
// metrics, as WriteError does.
func Public(r *http.Request, log *slog.Logger, err error) Answer {
	a, msg := public(r.Context(), log, err, statusesOf(r.Context()))
	setCode(r.Context(), a.code)
	return Answer{Status: a.status, Code: a.code, Message: msg, RetryAfter: a.retryAfter}
}

// public returns the answer and message a client may see for err, logging
// what it hides: the detail of a fault of ours, a 5xx.
func public(ctx context.Context, log *slog.Logger, err error, s Statuses) (answer, string) {
	if a, e, ok := known(err, s); ok {
		if a.status >= 500 {
			log.WarnContext(ctx, "request failed", "status", a.status, "code", a.code, "err", err)
		}
		return a, e.Msg
	}
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		log.InfoContext(ctx, "client gone", "err", err)
		return answer{http.StatusServiceUnavailable, CodeUnavailable, 0}, "request cancelled"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		log.WarnContext(ctx, "request ran out of time", "err", err)
		return byKind[problem.Unavailable], "the request took too long, please try again"
	default:
		log.ErrorContext(ctx, "internal error", "err", err)
		return answer{http.StatusInternalServerError, CodeInternal, 0}, "internal error"
	}
}

// NotFound answers routes the router does not know. The path is not
// echoed: it may be a megabyte long.
func NotFound(w http.ResponseWriter, r *http.Request) {
	Encode(w, http.StatusNotFound, ErrorBody{Error: "no such route", Code: CodeNotFound})
}

// MethodNotAllowed answers a known path asked with another method. It names
// the method only when it is one of the standard ones, never the path: both
// are the client's and may be a megabyte long.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	msg := "this method is not allowed on this path"
	if m := MethodLabel(r.Method); m != MethodOther {
		msg = "method " + m + " is not allowed on this path"
	}
	Encode(w, http.StatusMethodNotAllowed, ErrorBody{Error: msg, Code: CodeMethodNotAllowed})
}

// MethodOther is the label of every method outside the standard set.
const MethodOther = "other"

// MethodLabel returns the method as metrics and logs may show it: one of a
// fixed set, so that no request can create a label value of its own.
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return MethodOther
}

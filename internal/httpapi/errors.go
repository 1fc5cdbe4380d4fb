package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"
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
)

// statusByCode is the one map from error code to HTTP status.
var statusByCode = map[string]int{
	CodeInvalid:             http.StatusBadRequest,
	CodeNotFound:            http.StatusNotFound,
	CodeSoldOut:             http.StatusConflict,
	CodeBusy:                http.StatusTooManyRequests,
	CodeHoldExpired:         http.StatusGone,
	CodeHoldReleased:        http.StatusConflict,
	CodeHoldConfirmed:       http.StatusConflict,
	CodeIdempotencyMismatch: http.StatusUnprocessableEntity,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodeInternal:            http.StatusInternalServerError,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeLimitExceeded:       http.StatusConflict,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeTotalBelowHeld:      http.StatusConflict,
	CodeQueueRequired:       http.StatusForbidden,
	CodePassInvalid:         http.StatusForbidden,
	CodePassExpired:         http.StatusForbidden,
	CodePassUsed:            http.StatusForbidden,
	CodeUnsupportedMedia:    http.StatusUnsupportedMediaType,
	CodeNotOnSale:           http.StatusForbidden,
	CodeSaleClosed:          http.StatusForbidden,
}

// Error is an error a client may read: a code from the contract and a message
// for a person.
type Error struct {
	Code    string
	Message string
	// Status overrides the code's usual status, for the one place the
	// contract keeps the seed's choice (sold_out is 400 on /book/*).
	Status int
	// RetryAfter, when set, becomes the Retry-After header.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// HTTPStatus is the status the error is answered with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := statusByCode[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is shorthand for a 400 invalid_request with a message.
func Invalid(format string, args ...any) *Error {
	return Errorf(CodeInvalid, format, args...)
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// WriteError answers r with err. An *Error anywhere in err's chain is shown
// as it is; anything else is logged with its detail and answered 500
// "internal error", so nothing internal reaches a client.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := Public(r.Context(), log, err)
	setCode(r.Context(), e.Code)
	if e.RetryAfter > 0 {
		secs := int(math.Ceil(e.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	Encode(w, e.HTTPStatus(), ErrorBody{Error: e.Message, Code: e.Code})
}

// Public returns the *Error a client may see for err, logging what it
// hides: the detail of a fault of ours, a 5xx.
func Public(ctx context.Context, log *slog.Logger, err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		if e.HTTPStatus() >= 500 {
			log.WarnContext(ctx, "request failed", "status", e.HTTPStatus(), "code", e.Code, "err", err)
		}
		return e
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		log.InfoContext(ctx, "client gone", "err", err)
		return &Error{Code: CodeUnavailable, Message: "request cancelled"}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		log.WarnContext(ctx, "request ran out of time", "err", err)
		return &Error{Code: CodeUnavailable, Message: "the request took too long, please try again", RetryAfter: time.Second}
	default:
		log.ErrorContext(ctx, "internal error", "err", err)
		return &Error{Code: CodeInternal, Message: "internal error"}
	}
}

// ErrorJSON is the body of e's answer.
func ErrorJSON(e *Error) []byte {
	b, _ := json.Marshal(ErrorBody{Error: e.Message, Code: e.Code})
	return b
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

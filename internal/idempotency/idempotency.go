// Package idempotency implements the Idempotency-Key header of the
// contract: a client that repeats a request with the same key and the same
// values gets the first response again, status and body, instead of a second
// effect.
//
// The store keeps each key with a hash of the request's values and the
// response, written in the same transaction as the effect, so a key is
// either recorded with its effect or not at all. Only answers that changed
// something or that a retry must see again are kept: 200, 201, 409, 410 and
// 422. Those that say "try again" (429, 5xx) would replay a refusal the
// client was told to retry; a 403 (no pass, a pass that expired) refuses
// the request for who sent it or when, and kept it would be replayed to the
// same client once it has its pass; and 400 and 404 change nothing: keeping them
// would let anyone grow the table by a row a request (3,000 requests for an
// event that does not exist once stored 3,000 rows).
package idempotency

import (
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

// MaxKeyLength bounds a key; longer ones are refused as bad input.
const MaxKeyLength = 255

// ErrMismatch: the key was used before with other values.
var ErrMismatch = problem.New(problem.IdempotencyMismatch, "this Idempotency-Key was used with a different request")

// Key is one request's idempotency key, scoped to its endpoint (and, for
// confirm, its hold), with a hash of the values it asked for.
type Key struct {
	Scope string
	Key   string
	Hash  []byte
}

// Response is a response kept for replay.
type Response struct {
	Status int
	Body   []byte
}

// Keep reports whether r is kept for replay: 200, 201, 409, 410 or 422.
func (r Response) Keep() bool {
	switch r.Status {
	case http.StatusOK, http.StatusCreated, http.StatusConflict, http.StatusGone, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// FromRequest returns the request's key for scope, hashed over values (the
// validated request, so that equal JSON values hash alike whatever their
// spelling), or nil when the request has no Idempotency-Key header. A
// header that is blank, given twice, too long or not printable ASCII is an
// invalid_request.
func FromRequest(r *http.Request, scope string, values any) (*Key, error) {
	// A blank or repeated header is a client that meant to send a key:
	// taking it as no key would give its retry a second effect.
	sent := r.Header.Values(Header)
	switch {
	case len(sent) == 0:
		return nil, nil
	case len(sent) > 1:
		return nil, problem.Invalidf("send one %s header, not %d", Header, len(sent))
	}
	k := sent[0]
	if strings.TrimSpace(k) == "" {
		return nil, problem.Invalidf("%s is blank", Header)
	}
	if len(k) > MaxKeyLength {
		return nil, problem.Invalidf("%s is longer than %d characters", Header, MaxKeyLength)
	}
	for _, c := range k {
		if c < 0x21 || c > 0x7e {
			return nil, problem.Invalidf("%s must be printable ASCII without spaces", Header)
		}
	}
	canonical, err := json.Marshal(values)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canonical)
	return &Key{Scope: scope, Key: k, Hash: sum[:]}, nil
}

// Success renders a successful result as the response to keep.
func Success(status int, v any) Response {
	body, err := httpapi.Marshal(v)
	if err != nil {
		status, body, _ := httpapi.Render(err, nil)
		return Response{Status: status, Body: mustJSON(body)}
	}
	return Response{Status: status, Body: body}
}

// Failure renders a client-visible error as the response to keep, with the
// statuses of its endpoint (nil: the usual ones). An error that is not a
// *problem.Error is a fault of ours: a 500, never kept.
func Failure(err error, s httpapi.Statuses) Response {
	status, body, ok := httpapi.Render(err, s)
	if !ok {
		return Response{Status: http.StatusInternalServerError}
	}
	return Response{Status: status, Body: mustJSON(body)}
}

// mustJSON is an error body as JSON; an ErrorBody, two strings, always
// marshals.
func mustJSON(b httpapi.ErrorBody) []byte {
	out, _ := json.Marshal(b)
	return out
}

// Write sends a kept response.
func Write(w http.ResponseWriter, r Response) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(r.Status)
	// Two requests may replay one response at once: write its body as it
	// is, never append to it.
	_, _ = w.Write(r.Body)
	_, _ = w.Write([]byte{'\n'})
}

// Answer writes a request's outcome: the kept response when replay is set,
// else err when set, else v with status.
func Answer(w http.ResponseWriter, r *http.Request, log *slog.Logger, replay *Response, v any, status int, err error) {
	switch {
	case err != nil:
		httpapi.WriteError(w, r, log, err)
	case replay != nil:
		if replay.Status >= 400 {
			var body httpapi.ErrorBody
			if json.Unmarshal(replay.Body, &body) == nil {
				httpapi.NoteCode(r.Context(), body.Code)
			}
		}
		Write(w, *replay)
	default:
		httpapi.Encode(w, status, v)
	}
}

package booking

import (
	"errors"
	"log/slog"
	"math"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/clientaddr"
	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// Paging of GET /events.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

// HandleListEvents answers GET /events?limit=&after=: events in id order,
// after the given id, at most limit of them.
func HandleListEvents(store Store, log *slog.Logger) http.Handler {
	type page struct {
		Events []sale.Event `json:"events"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := httpapi.Query(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		limit, err := httpapi.QueryInt(q, "limit", DefaultPageSize, 1, MaxPageSize)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		after, err := httpapi.QueryInt(q, "after", 0, 0, math.MaxInt64)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		events, err := store.Events(r.Context(), after, int(limit))
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		if events == nil {
			events = []sale.Event{}
		}
		httpapi.Encode(w, http.StatusOK, page{Events: events})
	})
}

// HandleGetEvent answers GET /events/{id}.
func HandleGetEvent(store Store, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		ev, err := store.Event(r.Context(), id)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, ev)
	})
}

// bookStatuses are the one departure of /book/* from the usual statuses:
// sold_out is 400 there, as in the seed (409 on /holds).
var bookStatuses = httpapi.Statuses{problem.SoldOut: http.StatusBadRequest}

// HandleBookUnsafe answers POST /book/unsafe.
func HandleBookUnsafe(svc *Service, maxQuantity int, log *slog.Logger) http.Handler {
	return httpapi.WithStatuses(bookStatuses, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		order, ok := decodeOrder(w, r, maxQuantity, log)
		if !ok {
			return
		}
		b, err := svc.BookUnsafe(r.Context(), order)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, b)
	}))
}

// ScopeSafe is the idempotency scope of POST /book/safe.
const ScopeSafe = "POST /book/safe"

func renderBooked(b Booking, err error) idempotency.Response {
	if err != nil {
		return idempotency.Failure(err, bookStatuses)
	}
	return idempotency.Success(http.StatusOK, b)
}

// HandleBookSafe answers POST /book/safe, honouring Idempotency-Key.
func HandleBookSafe(svc *Service, maxQuantity int, log *slog.Logger) http.Handler {
	return httpapi.WithStatuses(bookStatuses, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		order, ok := decodeOrder(w, r, maxQuantity, log)
		if !ok {
			return
		}
		key, err := idempotency.FromRequest(r, ScopeSafe, order)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		order.Pass = pass.Check(svc.Passes, r.Header.Get(pass.Header), order.EventID, order.Email)
		out, err := svc.BookSafe(r.Context(), order, key, renderBooked)
		idempotency.Answer(w, r, log, out.Replay, out.Booking, http.StatusOK, errors.Join(err, out.Err))
	}))
}

// decodeOrder reads and validates the request body, answering the client
// itself when it is bad.
func decodeOrder(w http.ResponseWriter, r *http.Request, maxQuantity int, log *slog.Logger) (sale.Order, bool) {
	var req sale.Request
	if err := httpapi.Decode(w, r, &req); err != nil {
		httpapi.WriteError(w, r, log, err)
		return sale.Order{}, false
	}
	order, err := req.Order(maxQuantity)
	switch {
	case err != nil:
	case order.Items != nil:
		// The seed's endpoints keep the seed's body; items and seats are
		// for POST /holds.
		err = problem.Invalidf("unknown field items: /book/* takes a quantity; send items to POST /holds")
	case order.Seated():
		err = problem.Invalidf("/book/* takes a quantity; hold seats with POST /holds")
	}
	if err != nil {
		httpapi.WriteError(w, r, log, err)
		return sale.Order{}, false
	}
	order.Client = clientaddr.Key(r.Context())
	return order, true
}

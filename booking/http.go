package booking

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
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
		Events []Event `json:"events"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := DefaultPageSize
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxPageSize {
				httpapi.WriteError(w, r, log, httpapi.Invalid("limit must be an integer from 1 to %d", MaxPageSize))
				return
			}
			limit = n
		}
		var after int64
		if s := q.Get("after"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				httpapi.WriteError(w, r, log, httpapi.Invalid("after must be a non-negative integer"))
				return
			}
			after = n
		}
		events, err := store.Events(r.Context(), after, limit)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		if events == nil {
			events = []Event{}
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

// HandleBookUnsafe answers POST /book/unsafe.
func HandleBookUnsafe(svc *Service, maxQuantity int, log *slog.Logger) http.Handler {
	return handleBook(svc.BookUnsafe, maxQuantity, log)
}

// HandleBookSafe answers POST /book/safe.
func HandleBookSafe(svc *Service, maxQuantity int, log *slog.Logger) http.Handler {
	return handleBook(svc.BookSafe, maxQuantity, log)
}

func handleBook(book func(ctx context.Context, o Order) (Booking, error), maxQuantity int, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req Request
		if err := httpapi.Decode(w, r, &req); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		order, err := req.Order(maxQuantity)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		b, err := book(r.Context(), order)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, b)
	})
}

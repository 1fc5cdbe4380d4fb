package booking

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/sale"
)

// SeatStore is what seat maps need from storage.
type SeatStore interface {
	// Seats reads an event's seats (of one section, when section is not
	// ""), in the map's order; sale.ErrEventNotFound when there is no such
	// event.
	Seats(ctx context.Context, eventID int64, section string) ([]sale.Seat, error)
	// PutSeats makes m the event's seat map; sale.ErrSeatMapInUse while
	// anything of the event is held or sold.
	PutSeats(ctx context.Context, eventID int64, m sale.SeatMap) error
}

// MaxSeatMapBody is the largest body of PUT /admin/events/{id}/seats: a
// venue of sale.MaxSeats seats, with room to spare.
const MaxSeatMapBody = 8 << 20

// seatsBody is the answer of GET /events/{id}/seats and of the PUT.
type seatsBody struct {
	Seats []sale.Seat `json:"seats"`
}

// HandleSeats answers GET /events/{id}/seats?section=.
func HandleSeats(store SeatStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		seats, err := store.Seats(r.Context(), ev, r.URL.Query().Get("section"))
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, seatsBody{Seats: seats})
	})
}

// HandlePutSeats answers PUT /admin/events/{id}/seats: the map, then the
// seats as GET reads them.
func HandlePutSeats(store SeatStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		var in sale.SeatMapRequest
		if err := httpapi.DecodeUpTo(w, r, &in, MaxSeatMapBody); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		m, err := in.Map()
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		if err := store.PutSeats(r.Context(), ev, m); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		seats, err := store.Seats(r.Context(), ev, "")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "seat map defined", "event", ev, "seats", len(seats))
		httpapi.Encode(w, http.StatusOK, seatsBody{Seats: seats})
	})
}

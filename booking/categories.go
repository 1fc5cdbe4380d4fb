package booking

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// CategoryStore is what managing an event's categories needs from storage.
type CategoryStore interface {
	// CreateCategory adds a category to an event, its whole stock
	// available; sale.ErrEventNotFound when there is no such event.
	CreateCategory(ctx context.Context, eventID int64, p sale.CategoryPatch) (sale.Category, error)
	// UpdateCategory applies p under the event's row lock;
	// sale.ErrTotalBelowHeld if the total would leave fewer tickets than
	// are held and sold, sale.ErrCategoryMissing if the event has no such
	// category.
	UpdateCategory(ctx context.Context, eventID, id int64, p sale.CategoryPatch) (sale.Category, error)
}

// categoryInput is the JSON body of POST and PATCH
// /admin/events/{id}/categories.
type categoryInput struct {
	Name         *string      `json:"name"`
	Price        *string      `json:"price"`
	TotalTickets *httpapi.Int `json:"total_tickets"`
}

func (in categoryInput) patch() (sale.CategoryPatch, error) {
	var p sale.CategoryPatch
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if name == "" || utf8.RuneCountInString(name) > sale.MaxNameLength || strings.ContainsFunc(name, unicode.IsControl) {
			return p, problem.Invalidf("name must be 1 to %d characters, with no control characters", sale.MaxNameLength)
		}
		p.Name = &name
	}
	if in.Price != nil {
		c, err := money.Parse(*in.Price)
		if err != nil || c < 0 || c > maxPrice {
			return p, problem.Invalidf(`price must be a decimal string from "0.00" to "99999999.99"`)
		}
		p.Price = &c
	}
	if in.TotalTickets != nil {
		n := in.TotalTickets.N
		if !in.TotalTickets.Set || n < 0 || n > sale.MaxTotalTickets {
			return p, problem.Invalidf("total_tickets must be an integer from 0 to %d", sale.MaxTotalTickets)
		}
		total := int(n)
		p.Total = &total
	}
	return p, nil
}

// HandleCreateCategory answers POST /admin/events/{id}/categories.
func HandleCreateCategory(store CategoryStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		var in categoryInput
		if err := httpapi.Decode(w, r, &in); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		p, err := in.patch()
		if err == nil {
			switch {
			case p.Name == nil:
				err = problem.Invalidf("name is required")
			case p.Price == nil:
				err = problem.Invalidf("price is required")
			case p.Total == nil:
				err = problem.Invalidf("total_tickets is required")
			}
		}
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		c, err := store.CreateCategory(r.Context(), ev, p)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "category created", "event", ev, "category", c.ID, "total", c.TotalTickets)
		httpapi.Encode(w, http.StatusCreated, c)
	})
}

// HandleUpdateCategory answers PATCH /admin/events/{id}/categories/{cid}.
func HandleUpdateCategory(store CategoryStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		id, err := httpapi.ParseID(chi.URLParam(r, "cid"), "category id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		var in categoryInput
		if err := httpapi.Decode(w, r, &in); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		p, err := in.patch()
		if err == nil && p == (sale.CategoryPatch{}) {
			err = problem.Invalidf("nothing to change: send at least one of name, price, total_tickets")
		}
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		c, err := store.UpdateCategory(r.Context(), ev, id, p)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "category updated", "event", ev, "category", c.ID, "total", c.TotalTickets, "available", c.AvailableTickets)
		httpapi.Encode(w, http.StatusOK, c)
	})
}

package sale

import (
	"errors"

	"github.com/holdfast/holdfast/internal/problem"
)

// Errors every way of selling tickets returns. Each is a *problem.Error,
// which internal/httpapi answers as the contract says.
var (
	ErrEventNotFound = problem.New(problem.NotFound, "no such event")
	// ErrSoldOut: the stock is short. /book/* answers it 400, as in the
	// seed (booking's bookStatuses), POST /holds 409.
	ErrSoldOut = problem.New(problem.SoldOut, "not enough tickets available")
	// ErrLimitExceeded: the buyer would hold or own more of the event's
	// tickets than one buyer may (--max-tickets-per-user).
	ErrLimitExceeded = problem.New(problem.LimitExceeded, "this buyer already holds or owns as many tickets of this event as one buyer may")
	// ErrClientLimitExceeded: the client address would hold more of the
	// event's tickets at once than one address may
	// (--max-tickets-per-client).
	ErrClientLimitExceeded = problem.New(problem.LimitExceeded, "this address already holds as many tickets of this event as one address may")
	// ErrBusy: the event's lock was not had within the lock wait.
	ErrBusy = problem.New(problem.Busy, "the event is busy, please try again")
	// ErrUnavailable: PostgreSQL cannot be reached, or a deadlock or
	// serialization failure persisted after retries.
	ErrUnavailable = problem.New(problem.Unavailable, "the service is unavailable, please try again")
	// ErrNotOnSale: the event's on_sale_at has not come yet, by the
	// database's clock.
	ErrNotOnSale = problem.New(problem.NotOnSale, "this event is not on sale yet")
	// ErrSaleClosed: the event's off_sale_at has passed, by the database's
	// clock.
	ErrSaleClosed = problem.New(problem.SaleClosed, "the sale of this event has closed")
	// ErrCategoryRequired: a request of a quantity alone for an event of
	// several categories.
	ErrCategoryRequired = problem.New(problem.CategoryRequired, "the event has several categories: send items naming them")
	// ErrCategoryNotFound: an item names a category the event does not
	// have.
	ErrCategoryNotFound = problem.New(problem.NotFound, "an item names a category the event does not have")
	// ErrCategoryMissing: the admin API names a category the event does
	// not have.
	ErrCategoryMissing = problem.New(problem.NotFound, "no such category of this event")
)

// SaleErr is the error of a sale window's verdict as the store reads it
// ("not_on_sale", "sale_closed"), nil for "" (on sale).
func SaleErr(verdict string) error {
	switch verdict {
	case problem.NotOnSale.String():
		return ErrNotOnSale
	case problem.SaleClosed.String():
		return ErrSaleClosed
	}
	return nil
}

// IsSaleErr reports whether err is a sale window's refusal.
func IsSaleErr(err error) bool {
	return errors.Is(err, ErrNotOnSale) || errors.Is(err, ErrSaleClosed)
}

// ErrTotalBelowHeld: an event's total cannot go below the tickets already
// held and sold.
var ErrTotalBelowHeld = problem.New(problem.TotalBelowHeld, "total_tickets cannot go below the tickets already held and sold")

// ErrSaleWindow: off_sale_at must come after on_sale_at (the database's
// events_sale_window check, for a change that meets the stored other end).
var ErrSaleWindow = problem.Invalidf("off_sale_at must be later than on_sale_at")

// CategorySoldOut is ErrSoldOut for a request refused because category id
// has fewer tickets left than it asked for: the message names it.
func CategorySoldOut(id int64) error {
	return problem.Errorf(problem.SoldOut, "not enough tickets available in category %d", id)
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/sale"
)

const (
	qCreateEvent = `INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price,
		on_sale_at, off_sale_at, queue_admit_per_second, queue_pass_ttl_seconds)
		VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9) RETURNING ` + eventColumns

	qLockEventStock = `SELECT total_tickets, available_tickets FROM events WHERE id = $1::bigint FOR UPDATE`

	// qUpdateEvent changes what the patch names; a new total moves the
	// available count by the same amount, so held and sold tickets stay
	// as they are.
	qUpdateEvent = `UPDATE events SET
		name = coalesce($2, name),
		description = coalesce($3, description),
		event_date = coalesce($4, event_date),
		ticket_price = coalesce($5, ticket_price),
		total_tickets = $6,
		available_tickets = available_tickets + ($6 - total_tickets),
		on_sale_at = CASE WHEN $7 THEN $8::timestamptz ELSE on_sale_at END,
		off_sale_at = CASE WHEN $9 THEN $10::timestamptz ELSE off_sale_at END,
		queue_admit_per_second = CASE WHEN $11 THEN $12::int ELSE queue_admit_per_second END,
		queue_pass_ttl_seconds = CASE WHEN $11 THEN $13::int ELSE queue_pass_ttl_seconds END
		WHERE id = $1::bigint
		RETURNING ` + eventColumns
)

// CreateEvent inserts an event, its whole stock available, guarded.
func (s *Store) CreateEvent(ctx context.Context, p sale.EventPatch) (sale.Event, error) {
	desc := ""
	if p.Description != nil {
		desc = *p.Description
	}
	var r eventRow
	conn, err := s.once(ctx)
	if err != nil {
		return sale.Event{}, err
	}
	defer conn.Close()
	rate, ttl := queueArgs(p.Queue)
	if err := conn.GetContext(ctx, &r, qCreateEvent, *p.Name, desc, *p.EventDate, *p.Total, *p.Price,
		timeArg(p.OnSaleAt), timeArg(p.OffSaleAt), rate, ttl); err != nil {
		return sale.Event{}, mapErr(ctx, err)
	}
	// RETURNING is read before the AFTER trigger makes the default
	// category: read the event again to show it.
	if err := conn.GetContext(ctx, &r, qEvent, r.ID); err != nil {
		return sale.Event{}, mapErr(ctx, err)
	}
	return r.event(), nil
}

// UpdateEvent applies p under the event's row lock, so no hold or booking
// can slip in between the check and the change.
func (s *Store) UpdateEvent(ctx context.Context, id int64, p sale.EventPatch) (sale.Event, error) {
	var ev sale.Event
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var cur stockTotals
		if err := tx.GetContext(ctx, &cur, qLockEventStock, id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return sale.ErrEventNotFound
			}
			return mapErr(ctx, err)
		}
		// An event whose only category is seated keeps its total: the
		// database refuses (HF006, schema/023).
		total, err := cur.retotal(p.Total)
		if err != nil {
			return err
		}
		var price any
		if p.Price != nil {
			price = *p.Price
		}
		var date any
		if p.EventDate != nil {
			date = *p.EventDate
		}
		var r eventRow
		rate, ttl := queueArgs(p.Queue)
		if err := tx.GetContext(ctx, &r, qUpdateEvent, id, p.Name, p.Description, date, price, total,
			p.OnSaleAt.Set, timeArg(p.OnSaleAt), p.OffSaleAt.Set, timeArg(p.OffSaleAt), p.Queue.Set, rate, ttl); err != nil {
			return mapErr(ctx, err)
		}
		// The only category follows the event by an AFTER trigger, after
		// RETURNING was read.
		if err := tx.GetContext(ctx, &r, qEvent, id); err != nil {
			return mapErr(ctx, err)
		}
		ev = r.event()
		return nil
	})
	return ev, err
}

// timeArg is an optional time as a query argument: NULL when unset or
// cleared.
func timeArg(o sale.Optional[time.Time]) any {
	if o.V == nil {
		return nil
	}
	return *o.V
}

// queueArgs are the queue columns of an optional queue: NULLs when unset
// or cleared.
func queueArgs(o sale.Optional[sale.QueueSettings]) (rate, ttl any) {
	if o.V == nil {
		return nil, nil
	}
	return o.V.AdmitPerSecond, int(o.V.PassTTL)
}

const (
	categoryColumns = `id, name, price, total_tickets, available_tickets`

	qCreateCategory = `INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
		VALUES ($1::bigint, $2, $3, $4, $4) RETURNING ` + categoryColumns

	qLockCategory = `SELECT total_tickets, available_tickets FROM categories
		WHERE id = $1::bigint AND event_id = $2::bigint FOR UPDATE`

	// qUpdateCategory, as qUpdateEvent: a new total moves the available
	// count by the same amount.
	qUpdateCategory = `UPDATE categories SET
		name = coalesce($2, name),
		price = coalesce($3, price),
		total_tickets = $4,
		available_tickets = available_tickets + ($4 - total_tickets)
		WHERE id = $1::bigint
		RETURNING ` + categoryColumns
)

type categoryRow struct {
	ID        int64       `db:"id"`
	Name      string      `db:"name"`
	Price     money.Cents `db:"price"`
	Total     int         `db:"total_tickets"`
	Available int         `db:"available_tickets"`
}

func (r categoryRow) category() sale.Category {
	return sale.Category{ID: r.ID, Name: r.Name, Price: r.Price, TotalTickets: r.Total, AvailableTickets: r.Available}
}

// lockEvent locks the event's row, as every writer of stock does before
// its categories' rows.
func lockEvent(ctx context.Context, tx *sqlx.Tx, id int64) error {
	var cur struct {
		Total     int `db:"total_tickets"`
		Available int `db:"available_tickets"`
	}
	if err := tx.GetContext(ctx, &cur, qLockEventStock, id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return sale.ErrEventNotFound
		}
		return mapErr(ctx, err)
	}
	return nil
}

// CreateCategory adds a category to an event, under the event's row lock.
func (s *Store) CreateCategory(ctx context.Context, eventID int64, p sale.CategoryPatch) (sale.Category, error) {
	if !validID(eventID) {
		return sale.Category{}, sale.ErrEventNotFound
	}
	var c sale.Category
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if err := lockEvent(ctx, tx, eventID); err != nil {
			return err
		}
		var r categoryRow
		if err := tx.GetContext(ctx, &r, qCreateCategory, eventID, *p.Name, *p.Price, *p.Total); err != nil {
			return mapErr(ctx, err)
		}
		c = r.category()
		return nil
	})
	return c, err
}

// UpdateCategory applies p under the event's row lock, then the
// category's, so no hold can slip in between the check and the change.
func (s *Store) UpdateCategory(ctx context.Context, eventID, id int64, p sale.CategoryPatch) (sale.Category, error) {
	if !validID(eventID) {
		return sale.Category{}, sale.ErrEventNotFound
	}
	if !validID(id) {
		return sale.Category{}, sale.ErrCategoryMissing
	}
	var c sale.Category
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if err := lockEvent(ctx, tx, eventID); err != nil {
			return err
		}
		var cur stockTotals
		if err := tx.GetContext(ctx, &cur, qLockCategory, id, eventID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return sale.ErrCategoryMissing
			}
			return mapErr(ctx, err)
		}
		total, err := cur.retotal(p.Total)
		if err != nil {
			return err
		}
		if total != cur.Total {
			var seated bool
			if err := tx.GetContext(ctx, &seated, qCategorySeated, id); err != nil {
				return mapErr(ctx, err)
			}
			if seated {
				return sale.ErrSeatedTotal
			}
		}
		var price any
		if p.Price != nil {
			price = *p.Price
		}
		var r categoryRow
		if err := tx.GetContext(ctx, &r, qUpdateCategory, id, p.Name, price, total); err != nil {
			return mapErr(ctx, err)
		}
		c = r.category()
		return nil
	})
	return c, err
}

// stockTotals is a locked row's stock: an event's or a category's.
type stockTotals struct {
	Total     int `db:"total_tickets"`
	Available int `db:"available_tickets"`
}

// retotal is the total the row takes for newTotal (nil: unchanged). A new
// total moves available by the same amount, so it may not go below what is
// held and sold: ErrTotalBelowHeld.
func (t stockTotals) retotal(newTotal *int) (int, error) {
	if newTotal == nil {
		return t.Total, nil
	}
	if t.Available+(*newTotal-t.Total) < 0 {
		return 0, sale.ErrTotalBelowHeld
	}
	return *newTotal, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/booking"
)

const (
	qCreateEvent = `INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ($1, $2, $3, $4, $4, $5) RETURNING ` + eventColumns

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
		available_tickets = available_tickets + ($6 - total_tickets)
		WHERE id = $1::bigint
		RETURNING ` + eventColumns
)

// CreateEvent inserts an event, its whole stock available, guarded.
func (s *Store) CreateEvent(ctx context.Context, p booking.EventPatch) (booking.Event, error) {
	desc := ""
	if p.Description != nil {
		desc = *p.Description
	}
	var r eventRow
	conn, err := s.once(ctx)
	if err != nil {
		return booking.Event{}, err
	}
	defer conn.Close()
	if err := conn.GetContext(ctx, &r, qCreateEvent, *p.Name, desc, *p.EventDate, *p.Total, *p.Price); err != nil {
		return booking.Event{}, mapErr(ctx, err)
	}
	return r.event(), nil
}

// UpdateEvent applies p under the event's row lock, so no hold or booking
// can slip in between the check and the change.
func (s *Store) UpdateEvent(ctx context.Context, id int64, p booking.EventPatch) (booking.Event, error) {
	var ev booking.Event
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var cur struct {
			Total     int `db:"total_tickets"`
			Available int `db:"available_tickets"`
		}
		if err := tx.GetContext(ctx, &cur, qLockEventStock, id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return booking.ErrEventNotFound
			}
			return mapErr(ctx, err)
		}
		total := cur.Total
		if p.Total != nil {
			total = *p.Total
			if cur.Available+(total-cur.Total) < 0 {
				return booking.ErrTotalBelowHeld
			}
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
		if err := tx.GetContext(ctx, &r, qUpdateEvent, id, p.Name, p.Description, date, price, total); err != nil {
			return mapErr(ctx, err)
		}
		ev = r.event()
		return nil
	})
	return ev, err
}

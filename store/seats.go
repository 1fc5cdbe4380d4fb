package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// errSeatMarks is the unique index refusing a second live booking of a
// seat hold_seats picked: the event's seat blocks marked a booked seat
// free, which only a writer behind the triggers' back can cause.
// CreateHolds then rebuilds the blocks and serves the batch once more.
var errSeatMarks = errors.New("store: the seat blocks marked a booked seat free")

// qRebuildSeatBlocks makes an event's seat blocks again from its seats'
// live bookings, under the event's lock.
const qRebuildSeatBlocks = `WITH e AS (SELECT id FROM events WHERE id = $1 FOR UPDATE)
	SELECT seat_blocks_rebuild(ARRAY(SELECT id FROM e))`

// rebuildSeatMarks rebuilds ev's seat blocks.
func (s *Store) rebuildSeatMarks(ctx context.Context, ev int64) error {
	_, err := s.db.ExecContext(ctx, qRebuildSeatBlocks, ev)
	return mapErr(ctx, err)
}

// errSeated is hold_batch refusing an item of a seated category (HF005,
// schema/013): the batch must go through hold_seats.
var errSeated = errors.New("store: a seated category asked for by quantity")

// qHoldSeats runs the database's hold_seats (schema/013, 016), which picks the
// seats of a batch's seated requests and grants every request through
// hold_batch: $1 to $7 as qHoldBatch's (the items of the requests without
// seats), $8 and $9 the named seats flattened (request, seat id), $10 to
// $12 each request's best available (category or NULL, quantity, section
// or NULL), then qHoldBatch's $8 to $11.
const qHoldSeats = `SELECT n, outcome, expired,
	hold_id, event_id, user_email, quantity, total_amount, expires_at, created_at, confirmed_at, status,
	short_category, item_categories, item_quantities, item_prices, seats, refused_seats
	FROM hold_seats($1::bigint, $2::text[], $3::text[], $4::inet[], $5::int[], $6::int[], $7::int[],
		$8::int[], $9::text[], $10::int[], $11::int[], $12::text[],
		$13::bigint, $14::int, $15::int, $16::text[])
	ORDER BY n`

// seatArgs are a batch's seat requests as hold_seats takes them.
type seatArgs struct {
	seatReqs     []int64
	seatIDs      []string
	bestCats     []sql.NullInt64
	bestQtys     []int64
	bestSections []sql.NullString
}

func newSeatArgs(n int) seatArgs {
	return seatArgs{
		seatReqs: []int64{}, seatIDs: []string{},
		bestCats: make([]sql.NullInt64, n), bestQtys: make([]int64, n), bestSections: make([]sql.NullString, n),
	}
}

// add records request i (0-based), a seated order.
func (a *seatArgs) add(i int, o sale.Order) {
	if o.Best != nil {
		a.bestCats[i] = categoryArg(o.Best.CategoryID)
		a.bestQtys[i] = int64(o.Best.Quantity)
		a.bestSections[i] = sql.NullString{String: o.Best.Section, Valid: o.Best.Section != ""}
		return
	}
	for _, id := range o.Seats {
		a.seatReqs = append(a.seatReqs, int64(i+1))
		a.seatIDs = append(a.seatIDs, id)
	}
}

const (
	// qSeats reads an event's seats in the map's order, each with its
	// status and never its booking. A pending hold past its expiry holds
	// nothing: the next request that needs its seats expires it first.
	qSeats = `SELECT s.id, s.section, s.row_name, s.number, s.category_id,
		CASE WHEN b.booking_status = 'confirmed' THEN 'sold'
		     WHEN b.booking_status = 'pending' AND b.expires_at > clock_timestamp() THEN 'held'
		     ELSE 'available' END AS status
		FROM seats s
		LEFT JOIN booking_seats bs ON bs.event_id = s.event_id AND bs.seat_id = s.id AND bs.live
		LEFT JOIN bookings b ON b.id = bs.booking_id
		WHERE s.event_id = $1 AND ($2 = '' OR s.section = $2)
		ORDER BY s.section_pos, s.row_pos, s.seat_pos`

	qEventExists = `SELECT EXISTS (SELECT 1 FROM events WHERE id = $1::bigint)`

	qLiveBookings = `SELECT EXISTS (SELECT 1 FROM bookings WHERE event_id = $1
		AND booking_status IN ('pending', 'confirmed'))`

	qDeleteSeats = `DELETE FROM seats WHERE event_id = $1`

	qInsertSeats = `INSERT INTO seats (event_id, id, section, row_name, number, category_id, section_pos, row_pos, seat_pos)
		SELECT $1, u.section || '-' || u.row_name || '-' || u.number, u.section, u.row_name, u.number, u.category_id,
		       u.section_pos, u.row_pos, u.seat_pos
		FROM unnest($2::text[], $3::text[], $4::int[], $5::int[], $6::int[], $7::int[], $8::int[])
		     AS u(section, row_name, number, category_id, section_pos, row_pos, seat_pos)`

	// qSeatedTotals makes each seated category's stock its seats: with
	// nothing held or sold its available tickets are its total, and the
	// total moves them by the same amount.
	qSeatedTotals = `UPDATE categories c SET
		available_tickets = c.available_tickets + (n.seats - c.total_tickets),
		total_tickets = n.seats
		FROM (SELECT category_id, count(*)::int AS seats FROM seats WHERE event_id = $1 GROUP BY category_id) n
		WHERE c.id = n.category_id AND c.total_tickets <> n.seats`

	qCategoryIDs = `SELECT id FROM categories WHERE event_id = $1`

	qCategorySeated = `SELECT EXISTS (SELECT 1 FROM seats WHERE category_id = $1)`
)

type seatRow struct {
	ID         string `db:"id"`
	Section    string `db:"section"`
	Row        string `db:"row_name"`
	Number     int    `db:"number"`
	CategoryID int64  `db:"category_id"`
	Status     string `db:"status"`
}

// Seats reads ev's seats, of one section when section is not "", in the
// map's order; sale.ErrEventNotFound when there is no such event.
func (s *Store) Seats(ctx context.Context, ev int64, section string) ([]sale.Seat, error) {
	if !validID(ev) {
		return nil, sale.ErrEventNotFound
	}
	var rows []seatRow
	if err := s.db.SelectContext(ctx, &rows, qSeats, ev, section); err != nil {
		return nil, mapErr(ctx, err)
	}
	if len(rows) == 0 {
		var ok bool
		if err := s.db.GetContext(ctx, &ok, qEventExists, ev); err != nil {
			return nil, mapErr(ctx, err)
		}
		if !ok {
			return nil, sale.ErrEventNotFound
		}
	}
	out := make([]sale.Seat, len(rows))
	for i, r := range rows {
		out[i] = sale.Seat{ID: r.ID, Section: r.Section, Row: r.Row, Number: r.Number, CategoryID: r.CategoryID, Status: sale.SeatStatus(r.Status)}
	}
	return out, nil
}

// PutSeats makes m ev's seat map, replacing any it had, under the event's
// row lock: sale.ErrSeatMapInUse while anything of the event is held or
// sold (the database refuses it too), an invalid_request error for a seat
// of a category the event does not have. Each seated category's
// total_tickets becomes its number of seats.
func (s *Store) PutSeats(ctx context.Context, ev int64, m sale.SeatMap) error {
	if !validID(ev) {
		return sale.ErrEventNotFound
	}
	var sections, rowNames []string
	var numbers, cats, secPos, rowPos, seatPos []int64
	for i, sec := range m.Sections {
		for j, row := range sec.Rows {
			for k, st := range row.Seats {
				sections, rowNames = append(sections, sec.Name), append(rowNames, row.Name)
				numbers, cats = append(numbers, int64(st.Number)), append(cats, st.CategoryID)
				secPos, rowPos, seatPos = append(secPos, int64(i)), append(rowPos, int64(j)), append(seatPos, int64(k))
			}
		}
	}
	return inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if err := lockEvent(ctx, tx, ev); err != nil {
			return err
		}
		var live bool
		if err := tx.GetContext(ctx, &live, qLiveBookings, ev); err != nil {
			return mapErr(ctx, err)
		}
		if live {
			return sale.ErrSeatMapInUse
		}
		var ids []int64
		if err := tx.SelectContext(ctx, &ids, qCategoryIDs, ev); err != nil {
			return mapErr(ctx, err)
		}
		for _, c := range cats {
			if !slices.Contains(ids, c) {
				return problem.Errorf(problem.NotFound, "a seat names category %d, which the event does not have", c)
			}
		}
		if _, err := tx.ExecContext(ctx, qDeleteSeats, ev); err != nil {
			return mapErr(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, qInsertSeats, ev, pq.Array(sections), pq.Array(rowNames), pq.Array(numbers),
			pq.Array(cats), pq.Array(secPos), pq.Array(rowPos), pq.Array(seatPos)); err != nil {
			return mapErr(ctx, err)
		}
		_, err := tx.ExecContext(ctx, qSeatedTotals, ev)
		return mapErr(ctx, err)
	})
}

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/statuspage"
)

const (
	// qStatusEvents pages through the events, busiest first. It picks the
	// page by total - available, which is held + confirmed while the stock
	// trigger keeps its invariant (Audit checks it), so only the page's
	// events have their bookings summed: summing every booking of every
	// event took 150 ms a call at 10,000 events and 200,000 bookings, this
	// takes under 10. Held counts every pending hold, lapsed or not: its
	// tickets stay out of available_tickets until it is swept.
	qStatusEvents = `
WITH page AS (
    SELECT id, name, total_tickets, available_tickets, coalesce(queue_admit_per_second, 0) AS admit_per_second
    FROM events
    ORDER BY total_tickets - available_tickets DESC, id
    LIMIT $1 OFFSET $2
)
SELECT p.id, p.name, p.total_tickets, p.available_tickets,
       coalesce((SELECT json_agg(json_build_object('id', c.id, 'name', c.name, 'price', c.price::text,
               'total_tickets', c.total_tickets, 'available_tickets', c.available_tickets) ORDER BY c.id)
           FROM categories c WHERE c.event_id = p.id), '[]')::text AS categories,
       coalesce(sum(b.quantity) FILTER (WHERE b.booking_status = 'pending'), 0)   AS held,
       coalesce(sum(b.quantity) FILTER (WHERE b.booking_status = 'confirmed'), 0) AS confirmed,
       p.admit_per_second
FROM page p
LEFT JOIN bookings b ON b.event_id = p.id AND b.booking_status IN ('pending', 'confirmed')
GROUP BY p.id, p.name, p.total_tickets, p.available_tickets, p.admit_per_second
ORDER BY p.total_tickets - p.available_tickets DESC, p.id`

	// qLatestHolds reads the latest holds with holdColumns, so their status
	// is the one the API reports. Latest by the serial id, which grows in
	// the order rows are inserted: the primary key read backwards finds
	// them without an index on created_at that every hold taken would have
	// to update.
	qLatestHolds = `SELECT ` + holdColumns + ` FROM bookings
		WHERE expires_at IS NOT NULL
		ORDER BY id DESC
		LIMIT $1`

	// qStatusSeats reads the seat maps of a page's events, a row of seats
	// a line, each seat one letter (see statuspage.SeatRow): a lapsed hold
	// still holds its seats here, as its tickets still count as held,
	// until it is swept.
	qStatusSeats = `SELECT s.event_id, s.section, s.row_name,
		string_agg(CASE WHEN b.booking_status = 'confirmed' THEN 's'
		                WHEN b.booking_status = 'pending' THEN 'h' ELSE 'a' END, '' ORDER BY s.seat_pos) AS seats
		FROM seats s
		LEFT JOIN booking_seats bs ON bs.event_id = s.event_id AND bs.seat_id = s.id AND bs.live
		LEFT JOIN bookings b ON b.id = bs.booking_id
		WHERE s.event_id = ANY ($1::int[])
		GROUP BY s.event_id, s.section_pos, s.section, s.row_pos, s.row_name
		ORDER BY s.event_id, s.section_pos, s.row_pos`
)

type statusSeatRow struct {
	EventID int64  `db:"event_id"`
	Section string `db:"section"`
	Row     string `db:"row_name"`
	Seats   string `db:"seats"`
}

type statusEventRow struct {
	ID        int64  `db:"id"`
	Name      string `db:"name"`
	Total     int    `db:"total_tickets"`
	Available int    `db:"available_tickets"`
	Held      int    `db:"held"`
	Confirmed int    `db:"confirmed"`
	// AdmitPerSecond is the queue's pace; 0: no queue.
	AdmitPerSecond int          `db:"admit_per_second"`
	Categories     categoryList `db:"categories"`
}

// StatusEvents returns a page of events for the status page, the ones with
// the most tickets held or confirmed first, then by id.
func (s *Store) StatusEvents(ctx context.Context, limit, offset int) ([]statuspage.EventStatus, error) {
	var rows []statusEventRow
	if err := s.db.SelectContext(ctx, &rows, qStatusEvents, limit, offset); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]statuspage.EventStatus, len(rows))
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var seats []statusSeatRow
	if err := s.db.SelectContext(ctx, &seats, qStatusSeats, pq.Array(ids)); err != nil {
		return nil, mapErr(ctx, err)
	}
	maps := map[int64][]statuspage.SeatRow{}
	for _, r := range seats {
		maps[r.EventID] = append(maps[r.EventID], statuspage.SeatRow{Section: r.Section, Row: r.Row, Seats: r.Seats})
	}
	for i, r := range rows {
		out[i] = statuspage.EventStatus{ID: r.ID, Name: r.Name, Total: r.Total, Available: r.Available,
			Held: r.Held, Confirmed: r.Confirmed, AdmitPerSecond: r.AdmitPerSecond, Seats: maps[r.ID]}
		for _, c := range r.Categories {
			out[i].Categories = append(out[i].Categories, statuspage.CategoryStatus{
				ID: c.ID, Name: c.Name, Total: c.TotalTickets, Available: c.AvailableTickets})
		}
	}
	return out, nil
}

// LatestHolds returns the latest limit holds for the status page, newest
// first. Each is named by holdTag; its id and its buyer stay here.
func (s *Store) LatestHolds(ctx context.Context, limit int) ([]statuspage.HoldStatus, error) {
	var rows []holdRow
	if err := s.db.SelectContext(ctx, &rows, qLatestHolds, limit); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]statuspage.HoldStatus, len(rows))
	for i, r := range rows {
		out[i] = statuspage.HoldStatus{
			Tag: holdTag(r.ID), EventID: r.EventID, Quantity: r.Quantity, Status: r.Status,
			CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.Time.UTC(),
		}
	}
	return out, nil
}

// holdTag is the first 6 hex digits of the SHA-256 of a hold's id: enough
// to tell the holds on the page apart, and no help in guessing the id, which
// is the capability to confirm or release the hold.
func holdTag(id uuid.UUID) string {
	sum := sha256.Sum256(id[:])
	return hex.EncodeToString(sum[:3])
}

// Database is the role of the server the pool reaches, for the status page.
func (s *Store) Database(ctx context.Context) (statuspage.Database, error) {
	r, err := ReadDBRole(ctx, s.db)
	return statuspage.Database(r), err
}

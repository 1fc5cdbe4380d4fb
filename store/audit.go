package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lib/pq"
)

// EventAudit is one event's stock set against its bookings.
type EventAudit struct {
	ID        int64
	Name      string
	Total     int
	Available int
	Held      int // tickets in pending bookings
	Confirmed int // tickets in confirmed bookings
	// Problems lists every invariant the event breaks; empty is healthy.
	Problems []string
}

const qAudit = `
SELECT e.id, e.name, e.total_tickets, e.available_tickets,
       coalesce(sum(b.quantity) FILTER (WHERE b.booking_status = 'pending'), 0)   AS held,
       coalesce(sum(b.quantity) FILTER (WHERE b.booking_status = 'confirmed'), 0) AS confirmed,
       -- A hold is expired from the instant expires_at is reached (the
       -- schema's confirm rule is expires_at <= clock_timestamp()), so a
       -- confirm at that instant is late too.
       count(*) FILTER (WHERE b.booking_status = 'confirmed' AND b.confirmed_at >= b.expires_at) AS late_confirms,
       count(*) FILTER (WHERE b.booking_status = 'pending'
                          AND b.expires_at < now() - $2 * interval '1 microsecond') AS stale_holds
FROM events e
LEFT JOIN bookings b ON b.event_id = e.id
WHERE cardinality($1::bigint[]) = 0 OR e.id = ANY($1::bigint[])
GROUP BY e.id
ORDER BY e.id`

// qAuditCategories sets each category's stock against its bookings'
// items, for the events qAudit reads.
const qAuditCategories = `
SELECT c.event_id, c.id, c.name, c.total_tickets, c.available_tickets,
       coalesce(sum(i.quantity) FILTER (WHERE b.booking_status = 'pending'), 0)   AS held,
       coalesce(sum(i.quantity) FILTER (WHERE b.booking_status = 'confirmed'), 0) AS confirmed
FROM categories c
LEFT JOIN booking_items i ON i.category_id = c.id
LEFT JOIN bookings b ON b.id = i.booking_id
WHERE cardinality($1::bigint[]) = 0 OR c.event_id = ANY($1::bigint[])
GROUP BY c.id
ORDER BY c.event_id, c.id`

// qAuditItems finds the booking items that break what booking_items'
// insert trigger checks (schema/020, in place of 011's foreign keys): an
// item whose booking or category is missing, or whose category is of
// another event than its booking. Each is counted under its booking's
// event, else its category's (an item of neither under event 0), and an
// item of another event's category under that event too, whose category's
// stock it moved: counted under the booking's event alone, check of the
// category's event passed it.
const qAuditItems = `
SELECT x.event_id,
       count(*) FILTER (WHERE x.no_booking) AS no_booking,
       count(*) FILTER (WHERE x.no_category) AS no_category,
       count(*) FILTER (WHERE x.other_event) AS other_event,
       count(*) FILTER (WHERE x.foreign_item) AS foreign_items,
       count(*) FILTER (WHERE x.uneven) AS uneven
FROM (
    SELECT coalesce(b.event_id, c.event_id, 0) AS event_id,
           b.id IS NULL AS no_booking, c.id IS NULL AS no_category,
           coalesce(b.event_id <> c.event_id, false) AS other_event, false AS foreign_item, false AS uneven
    FROM booking_items i
    LEFT JOIN bookings b ON b.id = i.booking_id
    LEFT JOIN categories c ON c.id = i.category_id
    WHERE b.id IS NULL OR c.id IS NULL OR b.event_id <> c.event_id
    UNION ALL
    SELECT c.event_id, false, false, false, true, false
    FROM booking_items i
    JOIN bookings b ON b.id = i.booking_id
    JOIN categories c ON c.id = i.category_id
    WHERE b.event_id <> c.event_id
    UNION ALL
    -- A live booking whose items do not add up to it: its categories'
    -- stock moved by more or less than its own (an item added to it
    -- later, by hand). A booking with no item at all (the seed's plain
    -- INSERT, /book/unsafe) takes from the event alone.
    SELECT b.event_id, false, false, false, false, true
    FROM bookings b
    JOIN (SELECT i.booking_id, sum(i.quantity) AS n FROM booking_items i GROUP BY i.booking_id) t ON t.booking_id = b.id
    WHERE b.booking_status IN ('pending', 'confirmed') AND t.n <> b.quantity
      AND (cardinality($1::bigint[]) = 0 OR b.event_id = ANY($1::bigint[]))
) x
WHERE cardinality($1::bigint[]) = 0 OR x.event_id = ANY($1::bigint[])
GROUP BY 1
ORDER BY 1`

type itemAuditRow struct {
	EventID    int64 `db:"event_id"`
	NoBooking  int   `db:"no_booking"`
	NoCategory int   `db:"no_category"`
	OtherEvent int   `db:"other_event"`
	Foreign    int   `db:"foreign_items"`
	Uneven     int   `db:"uneven"`
}

// problems are the item invariants the event's items break.
func (r itemAuditRow) problems() []string {
	var out []string
	if r.NoBooking > 0 {
		out = append(out, fmt.Sprintf("%d booking items of no booking", r.NoBooking))
	}
	if r.NoCategory > 0 {
		out = append(out, fmt.Sprintf("%d booking items of no category", r.NoCategory))
	}
	if r.OtherEvent > 0 {
		out = append(out, fmt.Sprintf("%d booking items of a category of another event", r.OtherEvent))
	}
	if r.Foreign > 0 {
		out = append(out, fmt.Sprintf("%d booking items of another event's bookings in its categories", r.Foreign))
	}
	if r.Uneven > 0 {
		out = append(out, fmt.Sprintf("%d live bookings whose items do not add up to their quantity", r.Uneven))
	}
	return out
}

// qAuditLostBookings counts the bookings of each event that does not
// exist (schema/020 keeps them out in place of 001's foreign key).
const qAuditLostBookings = `
SELECT b.event_id, count(*) AS bookings
FROM bookings b
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = b.event_id)
  AND (cardinality($1::bigint[]) = 0 OR b.event_id = ANY($1::bigint[]))
GROUP BY b.event_id
ORDER BY b.event_id`

type lostBookingsRow struct {
	EventID  int64 `db:"event_id"`
	Bookings int   `db:"bookings"`
}

// qAuditSeats checks the seats of every seated event qAudit reads: no
// seat has two live bookings (the unique index refuses them; the audit
// looks anyway), every live seat booking is of a live booking and of a
// seat of the map, of the category it was booked as, and every live
// booking has, for each seated category, one live seat of it for each of
// its tickets of it (counted over all categories together, a ticket of one
// category on a seat of another passed); and the seat blocks best
// available reads mark each seat as its bookings say.
const qAuditSeats = `
SELECT e.id AS event_id,
       (SELECT count(*) FROM (SELECT bs.seat_id FROM booking_seats bs WHERE bs.event_id = e.id AND bs.live
                              GROUP BY bs.seat_id HAVING count(*) > 1) d) AS doubled,
       (SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
        WHERE bs.event_id = e.id AND bs.live AND b.booking_status NOT IN ('pending', 'confirmed')) AS dead,
       (SELECT count(*) FROM booking_seats bs
        WHERE bs.event_id = e.id AND bs.live
          AND NOT EXISTS (SELECT 1 FROM seats s WHERE s.event_id = bs.event_id AND s.id = bs.seat_id
                                                 AND s.category_id = bs.category_id)) AS unknown,
       (SELECT count(*) FROM bookings b
        WHERE b.event_id = e.id AND b.booking_status IN ('pending', 'confirmed')
          AND EXISTS (
              SELECT 1
              FROM (SELECT i.category_id AS c, sum(i.quantity) AS n FROM booking_items i
                    WHERE i.booking_id = b.id AND EXISTS (SELECT 1 FROM seats s WHERE s.category_id = i.category_id)
                    GROUP BY i.category_id) tickets
              FULL JOIN (SELECT bs.category_id AS c, count(*) AS n FROM booking_seats bs
                         WHERE bs.booking_id = b.id AND bs.live GROUP BY bs.category_id) taken USING (c)
              WHERE coalesce(tickets.n, 0) <> coalesce(taken.n, 0))) AS unseated,
       (SELECT count(*) FROM seats st LEFT JOIN seat_blocks k ON k.id = st.block_id
        WHERE st.event_id = e.id
          AND (substr(k.free, st.block_idx, 1) = '0') IS DISTINCT FROM
              EXISTS (SELECT 1 FROM booking_seats bs WHERE bs.event_id = st.event_id AND bs.seat_id = st.id AND bs.live)) AS marked
FROM events e
WHERE (cardinality($1::bigint[]) = 0 OR e.id = ANY($1::bigint[]))
  AND (EXISTS (SELECT 1 FROM seats s WHERE s.event_id = e.id)
       OR EXISTS (SELECT 1 FROM booking_seats bs WHERE bs.event_id = e.id))
ORDER BY e.id`

type seatAuditRow struct {
	EventID  int64 `db:"event_id"`
	Doubled  int   `db:"doubled"`
	Dead     int   `db:"dead"`
	Unknown  int   `db:"unknown"`
	Unseated int   `db:"unseated"`
	Marked   int   `db:"marked"`
}

// problems are the seat invariants the event breaks.
func (r seatAuditRow) problems() []string {
	var out []string
	if r.Doubled > 0 {
		out = append(out, fmt.Sprintf("%d seats held or sold by more than one live booking", r.Doubled))
	}
	if r.Dead > 0 {
		out = append(out, fmt.Sprintf("%d seats still taken by bookings that failed", r.Dead))
	}
	if r.Unknown > 0 {
		out = append(out, fmt.Sprintf("%d seats taken that the map does not have, or not in the category booked", r.Unknown))
	}
	if r.Marked > 0 {
		out = append(out, fmt.Sprintf("%d seats whose free or taken mark (seat_blocks) disagrees with their bookings", r.Marked))
	}
	if r.Unseated > 0 {
		out = append(out, fmt.Sprintf("%d live bookings whose seats do not match their seated tickets", r.Unseated))
	}
	return out
}

type categoryAuditRow struct {
	EventID   int64  `db:"event_id"`
	ID        int64  `db:"id"`
	Name      string `db:"name"`
	Total     int    `db:"total_tickets"`
	Available int    `db:"available_tickets"`
	Held      int    `db:"held"`
	Confirmed int    `db:"confirmed"`
}

// problems are the invariants the category breaks.
func (r categoryAuditRow) problems() []string {
	var out []string
	if sum := r.Available + r.Held + r.Confirmed; sum != r.Total {
		out = append(out, fmt.Sprintf("category %d: available+held+confirmed = %d, total = %d", r.ID, sum, r.Total))
	}
	if r.Available < 0 {
		out = append(out, fmt.Sprintf("category %d: oversold by %d", r.ID, -r.Available))
	}
	return out
}

type auditRow struct {
	ID        int64  `db:"id"`
	Name      string `db:"name"`
	Total     int    `db:"total_tickets"`
	Available int    `db:"available_tickets"`
	Held      int    `db:"held"`
	Confirmed int    `db:"confirmed"`
	Late      int    `db:"late_confirms"`
	Stale     int    `db:"stale_holds"`
}

// Audit checks the invariants of the contract for the given events (all of
// them when ids is empty): available + held + confirmed = total, for the
// event and for each of its categories (counted by their bookings' items),
// 0 <= available for both,
// 0 <= available <= total, no booking confirmed after its hold expired,
// no pending hold left more than sweepEvery plus one second past its
// expiry, and for a seated event every held or sold seat taken by exactly
// one live booking and every live booking holding a seat for each of its
// seated tickets (qAuditSeats); every booking item of a booking and of a
// category of the booking's event (qAuditItems), and every booking of an
// event (qAuditLostBookings). An id that names no event is reported as a
// problem of its own, and so is an event that does not exist yet has
// bookings or items (after the events, with event 0 for items of no
// booking and no category, when every event is checked).
func (s *Store) Audit(ctx context.Context, ids []int64, sweepEvery time.Duration) ([]EventAudit, error) {
	if ids == nil {
		ids = []int64{}
	}
	grace := (sweepEvery + time.Second).Microseconds()
	var rows []auditRow
	if err := s.db.SelectContext(ctx, &rows, qAudit, pq.Array(ids), grace); err != nil {
		return nil, mapErr(ctx, err)
	}
	var cats []categoryAuditRow
	if err := s.db.SelectContext(ctx, &cats, qAuditCategories, pq.Array(ids)); err != nil {
		return nil, mapErr(ctx, err)
	}
	catProblems := map[int64][]string{}
	for _, c := range cats {
		catProblems[c.EventID] = append(catProblems[c.EventID], c.problems()...)
	}
	var seats []seatAuditRow
	if err := s.db.SelectContext(ctx, &seats, qAuditSeats, pq.Array(ids)); err != nil {
		return nil, mapErr(ctx, err)
	}
	for _, r := range seats {
		catProblems[r.EventID] = append(catProblems[r.EventID], r.problems()...)
	}
	var items []itemAuditRow
	if err := s.db.SelectContext(ctx, &items, qAuditItems, pq.Array(ids)); err != nil {
		return nil, mapErr(ctx, err)
	}
	for _, r := range items {
		catProblems[r.EventID] = append(catProblems[r.EventID], r.problems()...)
	}
	var lost []lostBookingsRow
	if err := s.db.SelectContext(ctx, &lost, qAuditLostBookings, pq.Array(ids)); err != nil {
		return nil, mapErr(ctx, err)
	}
	for _, r := range lost {
		catProblems[r.EventID] = append(catProblems[r.EventID], fmt.Sprintf("%d bookings of this event, which does not exist", r.Bookings))
	}
	seen := map[int64]bool{}
	out := make([]EventAudit, 0, len(rows)+1)
	for _, r := range rows {
		seen[r.ID] = true
		a := EventAudit{ID: r.ID, Name: r.Name, Total: r.Total, Available: r.Available, Held: r.Held, Confirmed: r.Confirmed}
		if sum := r.Available + r.Held + r.Confirmed; sum != r.Total {
			a.Problems = append(a.Problems, fmt.Sprintf("available+held+confirmed = %d, total = %d", sum, r.Total))
		}
		if r.Available < 0 {
			a.Problems = append(a.Problems, fmt.Sprintf("oversold by %d", -r.Available))
		}
		if r.Available > r.Total {
			a.Problems = append(a.Problems, "available above total")
		}
		if r.Late > 0 {
			a.Problems = append(a.Problems, fmt.Sprintf("%d bookings confirmed after their hold expired", r.Late))
		}
		if r.Stale > 0 {
			a.Problems = append(a.Problems, fmt.Sprintf("%d pending holds more than a sweep interval + 1s past expiry", r.Stale))
		}
		a.Problems = append(a.Problems, catProblems[r.ID]...)
		out = append(out, a)
	}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, EventAudit{ID: id, Problems: append([]string{"no such event"}, catProblems[id]...)})
		}
	}
	// What refers to an event that does not exist (bookings, items), or
	// to none (event 0: items of no booking and no category).
	var gone []int64
	for id := range catProblems {
		if !seen[id] && len(catProblems[id]) > 0 {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		a := EventAudit{ID: id, Problems: catProblems[id]}
		if id == 0 {
			a.Name = "(no event)"
		} else {
			a.Problems = append([]string{"no such event"}, a.Problems...)
		}
		out = append(out, a)
	}
	return out, nil
}

// Summary is the problems joined for a table cell.
func (a EventAudit) Summary() string {
	if len(a.Problems) == 0 {
		return "ok"
	}
	return "VIOLATION: " + strings.Join(a.Problems, "; ")
}

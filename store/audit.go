package store

import (
	"context"
	"fmt"
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
// 0 <= available <= total, no booking confirmed after its hold expired, and
// no pending hold left more than sweepEvery plus one second past its
// expiry. An id that names no event is reported as a problem of its own.
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
	seen := map[int64]bool{}
	out := make([]EventAudit, 0, len(rows))
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
			out = append(out, EventAudit{ID: id, Problems: []string{"no such event"}})
		}
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

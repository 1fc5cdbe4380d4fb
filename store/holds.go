package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// holdColumns reads a bookings row as a hold. A pending hold whose expiry
// has passed by the database's clock reads expired at once, swept or not.
const holdColumns = `hold_id, event_id, user_email, quantity, total_amount, expires_at, created_at, confirmed_at,
	coalesce(queue_place, '') AS queue_place,
	coalesce(` + holdItemsOf + `bookings.id), '') AS items,
	coalesce(` + holdSeatsOf + `bookings.id), '') AS seats,
	CASE
		WHEN booking_status = 'pending' AND expires_at <= clock_timestamp() THEN 'expired'
		WHEN booking_status = 'pending' THEN 'pending'
		WHEN booking_status = 'confirmed' THEN 'confirmed'
		WHEN failure_reason = 'expired' THEN 'expired'
		WHEN failure_reason = 'cancelled' THEN 'cancelled'
		ELSE 'released'
	END AS status`

// holdItemsOf, followed by a booking id's column and a closing
// parenthesis, is that booking's items as holdRow.Items reads them, the
// same for a hold and for an event of the outbox.
const holdItemsOf = `(SELECT string_agg(i.category_id || ':' || i.quantity || ':' || i.price, ',' ORDER BY i.category_id)
		FROM booking_items i WHERE i.booking_id = `

// holdSeatsOf, followed like holdItemsOf, reads a hold's seats in the
// map's order.
const holdSeatsOf = `(SELECT string_agg(bs.seat_id, ',' ORDER BY st.section_pos, st.row_pos, st.seat_pos, bs.seat_id)
		FROM booking_seats bs LEFT JOIN seats st ON st.event_id = bs.event_id AND st.id = bs.seat_id
		WHERE bs.booking_id = `

const (
	qHold = `SELECT ` + holdColumns + ` FROM bookings WHERE hold_id = $1`

	// qConfirm confirms a pending hold only if its expiry has not passed by
	// the database's clock at this moment (clock_timestamp, not the
	// transaction's start). It locks only the booking row: confirming
	// moves no stock.
	qConfirm = `UPDATE bookings SET booking_status = 'confirmed', confirmed_at = clock_timestamp(), updated_at = clock_timestamp()
		WHERE hold_id = $1 AND booking_status = 'pending' AND expires_at > clock_timestamp()
		RETURNING ` + holdColumns

	qLockHold = `SELECT booking_status, coalesce(failure_reason, '') AS failure_reason,
		coalesce(expires_at <= clock_timestamp(), false) AS lapsed
		FROM bookings WHERE hold_id = $1 FOR UPDATE`
	qFailHold = `UPDATE bookings SET booking_status = 'failed', failure_reason = $2, updated_at = clock_timestamp()
		WHERE hold_id = $1 AND booking_status = 'pending'`
)

type holdRow struct {
	ID          uuid.UUID    `db:"hold_id"`
	EventID     int64        `db:"event_id"`
	UserEmail   string       `db:"user_email"`
	Quantity    int          `db:"quantity"`
	TotalAmount money.Cents  `db:"total_amount"`
	ExpiresAt   sql.NullTime `db:"expires_at"`
	CreatedAt   time.Time    `db:"created_at"`
	ConfirmedAt sql.NullTime `db:"confirmed_at"`
	Status      string       `db:"status"`
	Place       string       `db:"queue_place"`
	// Items is the hold's items as holdColumns writes them:
	// "category:quantity:price", comma-separated.
	Items string `db:"items"`
	// Seats is the hold's seats, comma-separated, in the map's order.
	Seats string `db:"seats"`
}

func (r holdRow) hold() (hold.Hold, error) {
	h := hold.Hold{
		ID: r.ID, EventID: r.EventID, UserEmail: r.UserEmail, Quantity: r.Quantity,
		TotalAmount: r.TotalAmount, Status: hold.Status(r.Status),
		ExpiresAt: r.ExpiresAt.Time.UTC(), CreatedAt: r.CreatedAt.UTC(), Place: r.Place,
		Items: []hold.Item{},
	}
	if r.ConfirmedAt.Valid {
		t := r.ConfirmedAt.Time.UTC()
		h.ConfirmedAt = &t
	}
	if r.Seats != "" {
		h.Seats = strings.Split(r.Seats, ",")
	}
	for _, it := range strings.Split(r.Items, ",") {
		if it == "" {
			continue
		}
		var cat int64
		var qty int
		var price string
		parts := strings.Split(it, ":")
		if len(parts) != 3 {
			return hold.Hold{}, fmt.Errorf("store: hold %s item %q", r.ID, it)
		}
		price = parts[2]
		if _, err := fmt.Sscan(parts[0]+" "+parts[1], &cat, &qty); err != nil {
			return hold.Hold{}, fmt.Errorf("store: hold %s item %q: %w", r.ID, it, err)
		}
		item, err := holdItem(cat, qty, price)
		if err != nil {
			return hold.Hold{}, err
		}
		h.Items = append(h.Items, item)
	}
	return h, nil
}

// holdItem is an item of category cat, qty tickets at price.
func holdItem(cat int64, qty int, price string) (hold.Item, error) {
	p, err := money.Parse(price)
	if err != nil {
		return hold.Item{}, fmt.Errorf("store: item price %q: %w", price, err)
	}
	amount, err := p.Times(int64(qty))
	if err != nil {
		return hold.Item{}, fmt.Errorf("store: item amount %d x %s: %w", qty, p, err)
	}
	return hold.Item{CategoryID: cat, Quantity: qty, Price: p, Amount: amount}, nil
}

// CreateHolds serves reqs for one event, in order, with one call of the
// database's hold_batch (schema/011), the one writing of the rules that
// grant a hold: it locks the event row, answers each request, inserts every
// hold it grants in one statement. Each request gets its own outcome; a
// request's failure (sold out, a reused idempotency key) does not touch the
// others.
//
// A batch without idempotency keys, the common case on sale day, is that
// call alone: one round trip, and the event row is never locked across the
// network. A batch with keys runs it inside a transaction that first claims
// the keys, passes hold_batch only the requests that are neither replays
// nor mismatches nor repeats of a key earlier in the batch, then keeps
// their responses, and commits once: keys add statements, never rules.
func (s *Store) CreateHolds(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
	outs, err := s.createHolds(ctx, eventID, reqs, ttl, render)
	if errors.Is(err, errSeatMarks) {
		if err := s.rebuildSeatMarks(ctx, eventID); err != nil {
			return nil, err
		}
		outs, err = s.createHolds(ctx, eventID, reqs, ttl, render)
	}
	return outs, err
}

func (s *Store) createHolds(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
	if s.oneCall && !anyKey(reqs) {
		return s.createHoldsInOneCall(ctx, eventID, reqs, ttl)
	}
	return s.createHoldsInTx(ctx, eventID, reqs, ttl, render)
}

func anyKey(reqs []hold.Request) bool {
	for _, r := range reqs {
		if r.Key != nil {
			return true
		}
	}
	return false
}

// anySeated reports whether a request of reqs asks for seats.
func anySeated(reqs []hold.Request) bool {
	return slices.ContainsFunc(reqs, func(r hold.Request) bool { return r.Order.Seated() })
}

// qHoldBatch runs the database's hold_batch_events (schema/015: hold_batch
// of 011, with the caps of 007, the sale window of 009, the waiting room's
// checks of 010 and the categories of 011, for the requests of several
// events), which answers each request with one row in order. $1 is each
// request's event. $5 to $7 are the requests' items, flattened: request
// (1-based), category (NULL: the event's only one), quantity. $11 is each
// request's admitted place, empty for none; $12 passes over event rows
// another transaction holds, answering their requests locked.
const qHoldBatch = `SELECT n, outcome, expired,
	hold_id, event_id, user_email, quantity, total_amount, expires_at, created_at, confirmed_at, status,
	short_category, item_categories, item_quantities, item_prices
	FROM hold_batch_events($1::bigint[], $2::text[], $3::text[], $4::inet[], $5::int[], $6::int[], $7::int[],
		$8::bigint, $9::int, $10::int, $11::text[], $12::boolean)
	ORDER BY n`

// CreateHoldsEvents serves the batches of several events in one call of
// hold_batch_events: each event's requests in their order, every rule
// applied per event, every hold granted inserted in one statement, one
// commit. Without idempotency keys the call is all, outside any
// transaction; with them it runs in the transaction that claims and
// keeps the keys, as CreateHolds does for one event (spread over 10,000
// events, batches of about one request each were a transaction each: a
// tenth of the rate without keys, BENCHMARKS.md, "Holds with an
// Idempotency-Key"). It waits for no lock: a batch whose event row
// another transaction holds is not served and its outcomes are nil, for
// the caller to serve it alone with CreateHolds, which waits for the row;
// a key of such a batch is not kept (its placeholder is forgotten in the
// same transaction), so that call claims it afresh.
func (s *Store) CreateHoldsEvents(ctx context.Context, batches []hold.EventBatch, ttl time.Duration, render hold.Render) ([][]hold.Outcome, error) {
	var events []int64
	var reqs []hold.Request
	res := make([][]hold.Outcome, len(batches))
	grouped := make([]bool, len(batches))
	for i, b := range batches {
		// Seats are picked one event a call (hold_seats): such a batch
		// is left unserved, for the caller to serve alone.
		if anySeated(b.Reqs) {
			continue
		}
		grouped[i] = true
		for _, r := range b.Reqs {
			events = append(events, b.EventID)
			reqs = append(reqs, r)
		}
	}
	if len(reqs) == 0 {
		return res, nil
	}
	var outs []hold.Outcome
	var err error
	if anyKey(reqs) {
		outs, err = s.holdsInTx(ctx, events, reqs, ttl, render, true)
	} else {
		outs, err = s.holdBatchAlone(ctx, events, reqs, ttl, true)
	}
	if err != nil {
		return nil, err
	}
	k := 0
	for i, b := range batches {
		if !grouped[i] {
			continue
		}
		part := outs[k : k+len(b.Reqs)]
		k += len(b.Reqs)
		// Every fresh request of a batch whose row was passed over is
		// answered locked; with keys, one answered by its claim (a replay,
		// a mismatch) is not, so any locked request means the batch.
		if slices.ContainsFunc(part, func(o hold.Outcome) bool { return errors.Is(o.Err, errEventLocked) }) {
			continue
		}
		res[i] = part
	}
	return res, nil
}

// errEventLocked answers a request hold_batch_events passed over: its
// event row was another transaction's. It never leaves the package.
var errEventLocked = errors.New("store: the event row is locked")

// sameEvent is eventID once per request of a batch of n.
func sameEvent(eventID int64, n int) []int64 {
	events := make([]int64, n)
	for i := range events {
		events[i] = eventID
	}
	return events
}

// createHoldsInOneCall is CreateHolds for a batch without idempotency keys.
func (s *Store) createHoldsInOneCall(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration) ([]hold.Outcome, error) {
	return s.holdBatchAlone(ctx, sameEvent(eventID, len(reqs)), reqs, ttl, false)
}

// holdBatchAlone runs hold_batch_events for reqs (request i of events[i])
// outside a transaction: the statement commits on its own.
func (s *Store) holdBatchAlone(ctx context.Context, events []int64, reqs []hold.Request, ttl time.Duration, skipLocked bool) ([]hold.Outcome, error) {
	var outs []hold.Outcome
	var expiredN int
	err := retrying(ctx, func() error {
		// Never run twice by database/sql: see once.
		conn, err := s.once(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		outs, expiredN, err = s.holdBatch(ctx, conn, events, reqs, ttl, skipLocked, false)
		if errors.Is(err, errSeated) && !skipLocked {
			// A seated category asked by quantity: hold_seats tells
			// those requests to name seats. (A group call fails whole;
			// its caller serves each batch alone, which lands here.)
			outs, expiredN, err = s.holdBatch(ctx, conn, events, reqs, ttl, false, true)
		}
		return err
	})
	if errors.Is(err, errAnswered) {
		// The statement ran, and outside a transaction it commits
		// whatever its answer's reading found: served again, its holds
		// would be made twice.
		return nil, fmt.Errorf("%w: %w", sale.ErrUnavailable, err)
	}
	if err != nil {
		return nil, err
	}
	s.counters.HoldsCreated(granted(outs))
	s.counters.HoldsExpired(expiredN)
	return outs, nil
}

// errAnswered wraps a failure to read what hold_batch answered, once it
// ran. In a transaction that rolls it back; outside one, the statement has
// committed (or does as its rows are drained), so its outcome is unknown,
// never "nothing happened".
var errAnswered = errors.New("store: reading hold_batch's answer")

// createHoldsInTx is CreateHolds for a batch with idempotency keys.
func (s *Store) createHoldsInTx(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
	return s.holdsInTx(ctx, sameEvent(eventID, len(reqs)), reqs, ttl, render, false)
}

// holdsInTx serves reqs (request i of events[i]) in one transaction that
// first claims their idempotency keys, passes hold_batch only the requests
// that are neither replays nor mismatches nor repeats of a key earlier in
// the call, then keeps their responses; skipLocked passes over event rows
// another transaction holds (errEventLocked), whose keys are then not
// kept.
func (s *Store) holdsInTx(ctx context.Context, events []int64, reqs []hold.Request, ttl time.Duration, render hold.Render, skipLocked bool) ([]hold.Outcome, error) {
	outs := make([]hold.Outcome, len(reqs))
	var created, expiredN int
	viaSeats := false
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		clear(outs)
		created, expiredN = 0, 0
		keys, err := claimKeys(ctx, tx, reqs, outs)
		if err != nil {
			return err
		}
		// The requests hold_batch is to answer: those a claim of the
		// call's has not answered already.
		var fresh []int
		for i := range reqs {
			if _, repeat := keys.repeats[i]; repeat || outs[i].Replay != nil || outs[i].Err != nil {
				continue
			}
			fresh = append(fresh, i)
		}
		if len(fresh) > 0 {
			sub := make([]hold.Request, len(fresh))
			subEvents := make([]int64, len(fresh))
			for j, i := range fresh {
				sub[j], subEvents[j] = reqs[i], events[i]
			}
			got, n, err := s.holdBatch(ctx, tx, subEvents, sub, ttl, skipLocked, viaSeats)
			if errors.Is(err, errSeated) && !viaSeats && !skipLocked {
				// Run again, the seated requests told to name seats. (A
				// group's call fails whole; its caller serves each batch
				// alone, which lands here.)
				viaSeats = true
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			if err != nil {
				return err
			}
			for j, i := range fresh {
				outs[i] = got[j]
			}
			created, expiredN = granted(got), n
		}
		return keepKeys(ctx, tx, reqs, keys, outs, render)
	})
	if err != nil {
		return nil, err
	}
	s.counters.HoldsCreated(created)
	s.counters.HoldsExpired(expiredN)
	return outs, nil
}

// granted counts the outcomes that are holds.
func granted(outs []hold.Outcome) int {
	n := 0
	for _, o := range outs {
		if o.Err == nil && o.Replay == nil {
			n++
		}
	}
	return n
}

// categoryArg is a category id as the grant functions take it, an int4.
// An id beyond int4 names no category, and 0 names none either but fits:
// the request is answered as for any unknown category, where the id itself
// failed the whole batch's call with an out-of-range error, every other
// request of the batch with it.
func categoryArg(id int64) sql.NullInt64 {
	if !validID(id) {
		id = 0
	}
	return sql.NullInt64{Int64: id, Valid: true}
}

// querier is what runs hold_batch: a connection of its own, or a
// transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// holdBatch calls hold_batch_events on q for reqs, request i of events[i],
// and returns one outcome per request, in order, and how many lapsed holds
// it expired; skipLocked passes over event rows another transaction holds.
// A batch of which some request asks for seats goes to hold_seats
// (schema/013), one event a call, which picks them and calls hold_batch;
// so does a batch hold_batch refused for asking a seated category by
// quantity (errSeated: the caller runs it again with viaSeats, and
// hold_seats tells those requests to name seats).
func (s *Store) holdBatch(ctx context.Context, q querier, events []int64, reqs []hold.Request, ttl time.Duration, skipLocked, viaSeats bool) ([]hold.Outcome, int, error) {
	viaSeats = viaSeats || anySeated(reqs)
	// A pass checked when its request came may have expired while the
	// request waited (its queue, the event's lock): judged again now, an
	// expired one takes no hold (the statement reads no place for it).
	// The caller's slice is left as it is: a copy, once one lapsed.
	now, lapsed := time.Now(), []hold.Request(nil)
	for i := range reqs {
		if g := reqs[i].Order.Pass.Lapsed(now); g.Place != reqs[i].Order.Pass.Place {
			if lapsed == nil {
				lapsed = slices.Clone(reqs)
			}
			lapsed[i].Order.Pass = g
		}
	}
	if lapsed != nil {
		reqs = lapsed
	}
	emails := make([]string, len(reqs))
	keys := make([]string, len(reqs))
	clients := make([]sql.NullString, len(reqs))
	places := make([]string, len(reqs))
	var itemReqs, itemQtys []int64
	var itemCats []sql.NullInt64
	var seated seatArgs
	if viaSeats {
		seated = newSeatArgs(len(reqs))
	}
	for i, r := range reqs {
		emails[i], places[i] = r.Order.Email, r.Order.Pass.Place
		keys[i], clients[i] = sale.BuyerKey(r.Order.Email), inetArg(clientAddr(r.Order))
		if r.Order.Seated() {
			seated.add(i, r.Order)
			continue
		}
		if len(r.Order.Items) == 0 {
			// The seed's body: the event's only category.
			itemReqs = append(itemReqs, int64(i+1))
			itemCats = append(itemCats, sql.NullInt64{})
			itemQtys = append(itemQtys, int64(r.Order.Quantity))
			continue
		}
		for _, it := range r.Order.Items {
			itemReqs = append(itemReqs, int64(i+1))
			itemCats = append(itemCats, categoryArg(it.CategoryID))
			itemQtys = append(itemQtys, int64(it.Quantity))
		}
	}
	var rows *sql.Rows
	var err error
	if viaSeats {
		if slices.ContainsFunc(events, func(e int64) bool { return e != events[0] }) {
			return nil, 0, errors.New("store: seats are held one event a call")
		}
		rows, err = q.QueryContext(ctx, qHoldSeats, events[0], pq.Array(emails), pq.Array(keys), pq.Array(clients),
			pq.Array(itemReqs), pq.Array(itemCats), pq.Array(itemQtys),
			pq.Array(seated.seatReqs), pq.Array(seated.seatIDs),
			pq.Array(seated.bestCats), pq.Array(seated.bestQtys), pq.Array(seated.bestSections),
			ttl.Microseconds(), s.ticketCap, s.clientCap, pq.Array(places))
	} else {
		rows, err = q.QueryContext(ctx, qHoldBatch, pq.Array(events), pq.Array(emails), pq.Array(keys), pq.Array(clients),
			pq.Array(itemReqs), pq.Array(itemCats), pq.Array(itemQtys),
			ttl.Microseconds(), s.ticketCap, s.clientCap, pq.Array(places), skipLocked)
	}
	if err != nil {
		return nil, 0, mapErr(ctx, err)
	}
	defer rows.Close()
	outs := make([]hold.Outcome, len(reqs))
	seen, expiredN := 0, 0
	for rows.Next() {
		var r batchRow
		dest := r.dest()
		if viaSeats {
			dest = append(dest, &r.Seats, &r.Refused)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, 0, fmt.Errorf("%w: %w", errAnswered, mapErr(ctx, err))
		}
		if r.N != seen+1 || r.N > len(reqs) {
			return nil, 0, fmt.Errorf("%w: request %d after %d of %d", errAnswered, r.N, seen, len(reqs))
		}
		seen = r.N
		expiredN = r.Expired
		out, err := r.outcome(reqs[r.N-1].Order)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %w", errAnswered, err)
		}
		outs[r.N-1] = out
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr(ctx, err)
	}
	if seen != len(reqs) {
		return nil, 0, fmt.Errorf("%w: %d of %d requests answered", errAnswered, seen, len(reqs))
	}
	return outs, expiredN, nil
}

// batchRow is one row of hold_batch: a request's outcome and, when it was
// held, the hold.
type batchRow struct {
	N         int
	Outcome   string
	Expired   int
	ID        uuid.NullUUID
	EventID   sql.NullInt64
	Email     sql.NullString
	Quantity  sql.NullInt64
	Total     sql.NullString
	ExpiresAt sql.NullTime
	CreatedAt sql.NullTime
	Confirmed sql.NullTime
	Status    sql.NullString
	Short     sql.NullInt64
	ItemCats  pq.Int64Array
	ItemQtys  pq.Int64Array
	ItemPrice pq.StringArray
	// Seats and Refused, from hold_seats only: the hold's seats, and the
	// seats a refusal names.
	Seats   pq.StringArray
	Refused pq.StringArray
}

func (r *batchRow) dest() []any {
	return []any{&r.N, &r.Outcome, &r.Expired, &r.ID, &r.EventID, &r.Email, &r.Quantity,
		&r.Total, &r.ExpiresAt, &r.CreatedAt, &r.Confirmed, &r.Status,
		&r.Short, &r.ItemCats, &r.ItemQtys, &r.ItemPrice}
}

// outcome is the row as the answer to the request for o.
func (r *batchRow) outcome(o sale.Order) (hold.Outcome, error) {
	switch r.Outcome {
	case "held":
		total, err := money.Parse(r.Total.String)
		if err != nil {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch total %q: %w", r.Total.String, err)
		}
		if !r.ID.Valid || r.Email.String != o.Email || int(r.Quantity.Int64) != o.Quantity {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch answered request %d with another's hold", r.N)
		}
		h, err := holdRow{
			ID: r.ID.UUID, EventID: r.EventID.Int64, UserEmail: r.Email.String, Quantity: int(r.Quantity.Int64),
			TotalAmount: total, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt.Time, ConfirmedAt: r.Confirmed,
			Status: r.Status.String,
		}.hold()
		if err != nil {
			return hold.Outcome{}, err
		}
		if len(r.ItemCats) != len(r.ItemQtys) || len(r.ItemCats) != len(r.ItemPrice) {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch answered request %d with uneven items", r.N)
		}
		for k := range r.ItemCats {
			item, err := holdItem(r.ItemCats[k], int(r.ItemQtys[k]), r.ItemPrice[k])
			if err != nil {
				return hold.Outcome{}, err
			}
			h.Items = append(h.Items, item)
		}
		// In category order, as holdColumns reads them back.
		slices.SortFunc(h.Items, func(a, b hold.Item) int { return cmp.Compare(a.CategoryID, b.CategoryID) })
		if len(r.Seats) > 0 {
			h.Seats = []string(r.Seats)
		}
		return hold.Outcome{Hold: h}, nil
	case "seat_taken":
		return hold.Outcome{Err: sale.SeatsTaken(r.Refused)}, nil
	case "seat_not_found":
		return hold.Outcome{Err: sale.SeatsNotFound(r.Refused)}, nil
	case "seats_required":
		return hold.Outcome{Err: sale.ErrSeatsRequired}, nil
	case "section_not_found":
		return hold.Outcome{Err: problem.Errorf(problem.NotFound, "the event's seat map has no section %q", o.Best.Section)}, nil
	case "not_seated":
		return hold.Outcome{Err: problem.Invalidf("category %d has no seats: ask for its tickets as items", o.Best.CategoryID)}, nil
	case "sold_out":
		if r.Short.Valid {
			return hold.Outcome{Err: sale.CategorySoldOut(r.Short.Int64)}, nil
		}
		return hold.Outcome{Err: sale.ErrSoldOut}, nil
	case "category_required":
		return hold.Outcome{Err: sale.ErrCategoryRequired}, nil
	case "category_not_found":
		return hold.Outcome{Err: sale.ErrCategoryNotFound}, nil
	case "limit_exceeded":
		return hold.Outcome{Err: sale.ErrLimitExceeded}, nil
	case "client_limit_exceeded":
		return hold.Outcome{Err: sale.ErrClientLimitExceeded}, nil
	case "not_found":
		return hold.Outcome{Err: sale.ErrEventNotFound}, nil
	case "queue_required":
		return hold.Outcome{Err: o.Pass.Refusal()}, nil
	case "pass_used":
		return hold.Outcome{Err: pass.ErrUsed}, nil
	case "locked":
		return hold.Outcome{Err: errEventLocked}, nil
	case "not_on_sale", "sale_closed":
		return hold.Outcome{Err: sale.SaleErr(r.Outcome)}, nil
	case "too_large":
		return hold.Outcome{Err: problem.Invalidf("the total of %d tickets is more than one booking can hold", o.Quantity)}, nil
	}
	return hold.Outcome{}, fmt.Errorf("store: hold_batch answered %q", r.Outcome)
}

// Hold reads one hold. A confirmed hold is read as confirmed only once the
// standby has the confirm (see settle).
func (s *Store) Hold(ctx context.Context, id uuid.UUID) (hold.Hold, error) {
	conn, err := s.once(ctx)
	if err != nil {
		return hold.Hold{}, err
	}
	defer conn.Close()
	var r holdRow
	err = conn.GetContext(ctx, &r, qHold, id)
	if errors.Is(err, sql.ErrNoRows) {
		return hold.Hold{}, hold.ErrNotFound
	}
	if err != nil {
		return hold.Hold{}, mapErr(ctx, err)
	}
	h, err := r.hold()
	if err != nil {
		return hold.Hold{}, err
	}
	if h.Status == hold.StatusConfirmed {
		if err := settle(ctx, conn); err != nil {
			return hold.Hold{}, err
		}
	}
	return h, nil
}

// Confirm confirms a hold in one transaction with its idempotency key.
func (s *Store) Confirm(ctx context.Context, id uuid.UUID, key *idempotency.Key, render hold.Render) (hold.Outcome, error) {
	return s.changeHold(ctx, key, render, func(tx *sqlx.Tx) (hold.Hold, holdChange, error) {
		return confirmTx(ctx, tx, id)
	})
}

// changeHold runs change, one change of a hold, in a transaction with its
// idempotency key: a key seen before replays; a refusal of the hold's (it
// expired, it was released) is the outcome, kept with the key and
// committed; anything else fails the transaction.
func (s *Store) changeHold(ctx context.Context, key *idempotency.Key, render hold.Render, change func(tx *sqlx.Tx) (hold.Hold, holdChange, error)) (hold.Outcome, error) {
	var out hold.Outcome
	var changed holdChange
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		out, changed = hold.Outcome{}, unchanged
		if key != nil {
			replay, err := claimKey(ctx, tx, key)
			if err != nil || replay != nil {
				out.Replay = replay
				return err
			}
		}
		var err error
		out.Hold, changed, err = change(tx)
		if err != nil && !refusal(err) {
			return err
		}
		out.Err = err
		if key != nil {
			return keepKey(ctx, tx, key, render(out.Hold, out.Err))
		}
		return nil
	})
	if err == nil {
		s.count(changed)
	}
	return out, err
}

// holdChange is what a call did to a hold, for the counters.
type holdChange int

const (
	unchanged holdChange = iota
	confirmed
	released
	expired
	extended
	cancelled
)

func (s *Store) count(c holdChange) {
	switch c {
	case confirmed:
		s.counters.HoldsConfirmed(1)
	case released:
		s.counters.HoldsReleased(1)
	case expired:
		s.counters.HoldsExpired(1)
	case extended:
		s.counters.HoldsExtended(1)
	case cancelled:
		s.counters.HoldsCancelled(1)
	}
}

// ConfirmTx is the body of Confirm, run in the caller's transaction (tests
// use it to hold a confirm open). A hold past its expiry is failed as
// expired here, in tx, and ErrExpired returned: the caller must commit tx
// for its stock to come back.
func (s *Store) ConfirmTx(ctx context.Context, tx *sqlx.Tx, id uuid.UUID) (hold.Hold, error) {
	h, _, err := confirmTx(ctx, tx, id)
	return h, err
}

func confirmTx(ctx context.Context, tx *sqlx.Tx, id uuid.UUID) (hold.Hold, holdChange, error) {
	var r holdRow
	err := tx.GetContext(ctx, &r, qConfirm, id)
	if err == nil {
		h, err := r.hold()
		return h, confirmed, err
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return hold.Hold{}, unchanged, mapHoldErr(ctx, err)
	}
	// Not confirmable as it stands: lock the hold and find out why.
	st, err := lockHold(ctx, tx, id)
	if err != nil {
		return hold.Hold{}, unchanged, err
	}
	switch {
	case st.Status == "confirmed":
		h, err := readHold(ctx, tx, id)
		return h, unchanged, err
	case st.Status == "failed":
		return hold.Hold{}, unchanged, failedErr(st.Reason)
	case st.Lapsed:
		if err := failHold(ctx, tx, id, "expired"); err != nil {
			return hold.Hold{}, unchanged, err
		}
		return hold.Hold{}, expired, hold.ErrExpired
	}
	// Pending and not lapsed: the first statement raced a change that has
	// since settled. Try it once more under the lock.
	if err := tx.GetContext(ctx, &r, qConfirm, id); err != nil {
		return hold.Hold{}, unchanged, mapHoldErr(ctx, err)
	}
	h, err := r.hold()
	return h, confirmed, err
}

// Release fails a pending hold as released.
func (s *Store) Release(ctx context.Context, id uuid.UUID) (hold.Hold, error) {
	var h hold.Hold
	var change holdChange
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		change = unchanged
		st, err := lockHold(ctx, tx, id)
		if err != nil {
			return err
		}
		switch {
		case st.Status == "confirmed":
			return hold.ErrConfirmed
		case st.Status == "pending" && st.Lapsed:
			change, err = expired, failHold(ctx, tx, id, "expired")
		case st.Status == "pending":
			change, err = released, failHold(ctx, tx, id, "released")
		}
		if err != nil {
			return err
		}
		h, err = readHold(ctx, tx, id)
		return err
	})
	if err == nil {
		s.count(change)
	}
	return h, err
}

type holdState struct {
	Status string `db:"booking_status"`
	Reason string `db:"failure_reason"`
	Lapsed bool   `db:"lapsed"`
}

// lockHold locks the hold's row and reads its state. If the caller then
// fails the hold, the stock trigger locks the event row after it: see the
// package doc for why that order cannot deadlock.
func lockHold(ctx context.Context, tx *sqlx.Tx, id uuid.UUID) (holdState, error) {
	var st holdState
	if err := tx.GetContext(ctx, &st, qLockHold, id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return holdState{}, hold.ErrNotFound
		}
		return holdState{}, mapErr(ctx, err)
	}
	return st, nil
}

func failHold(ctx context.Context, tx *sqlx.Tx, id uuid.UUID, reason string) error {
	_, err := tx.ExecContext(ctx, qFailHold, id, reason)
	return mapErr(ctx, err)
}

func readHold(ctx context.Context, tx *sqlx.Tx, id uuid.UUID) (hold.Hold, error) {
	var r holdRow
	if err := tx.GetContext(ctx, &r, qHold, id); err != nil {
		return hold.Hold{}, mapErr(ctx, err)
	}
	return r.hold()
}

// mapHoldErr is mapErr for confirm: the schema's refusal to confirm a lapsed
// hold (HF002) means the expiry passed between the statement's check and
// its trigger, a few microseconds; running the transaction again finds the
// hold lapsed and expires it.
func mapHoldErr(ctx context.Context, err error) error {
	if code(err) == "HF002" {
		return fmt.Errorf("%w: %v", errRetry, err)
	}
	return mapErr(ctx, err)
}

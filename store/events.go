package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
)

// Store is holdfast's PostgreSQL storage.
type Store struct {
	db       *sqlx.DB
	counters Counters
	// ticketCap is the most tickets of one event one buyer may hold or
	// own; 0 is no cap.
	ticketCap int
	// clientCap is the most tickets of one event one client address may
	// hold at once; 0 is no cap.
	clientCap int
	// oneCall serves batches without idempotency keys with one call of
	// hold_batch; tests switch it off to hold both paths to the same cases.
	oneCall bool
}

// Counters hears what committed transactions did to holds, for metrics.
type Counters interface {
	HoldsCreated(n int)
	HoldsConfirmed(n int)
	HoldsReleased(n int)
	HoldsExpired(n int)
}

type noCounters struct{}

func (noCounters) HoldsCreated(int)   {}
func (noCounters) HoldsConfirmed(int) {}
func (noCounters) HoldsReleased(int)  {}
func (noCounters) HoldsExpired(int)   {}

// New returns a Store on db.
func New(db *sqlx.DB) *Store { return &Store{db: db, counters: noCounters{}, oneCall: true} }

// SetTicketCap sets the most tickets of one event one buyer (an email,
// compared by booking.BuyerKey) may hold or have confirmed; 0 lifts the cap. It is
// enforced inside the transaction that holds the event row, so it is exact
// across instances.
func (s *Store) SetTicketCap(n int) { s.ticketCap = n }

// SetCounters makes the store report to c. Counts are reported after the
// transaction that made them commits, never for one that rolled back.
func (s *Store) SetCounters(c Counters) { s.counters = c }

// DB is the pool the store runs on.
func (s *Store) DB() *sqlx.DB { return s.db }

const eventColumns = `id, name, coalesce(description, '') AS description, event_date,
	total_tickets, available_tickets, ticket_price,
	on_sale_at, off_sale_at, queue_admit_per_second, queue_pass_ttl_seconds`

// qSaleVerdict is the sale window's verdict on the event row, by the
// database's clock (schema/009's sale_window): "" while on sale, else the
// error code.
const qSaleVerdict = `coalesce(sale_window(on_sale_at, off_sale_at), '') AS sale`

const (
	qEvents = `SELECT ` + eventColumns + ` FROM events WHERE id > $1::bigint ORDER BY id LIMIT $2`
	qEvent  = `SELECT ` + eventColumns + ` FROM events WHERE id = $1`

	// qStockUnlocked is the seed's unsafe read: no lock, so any number of
	// buyers read the same stock.
	qStockUnlocked = `SELECT available_tickets, ticket_price, ` + qSaleVerdict + ` FROM events WHERE id = $1::bigint`
	// qStockLocked locks the event row until the transaction ends, and
	// says whether the event has a waiting room: read with the row the
	// grant locks anyway, it costs no round trip and is never stale.
	qStockLocked = `SELECT available_tickets, ticket_price, ` + qSaleVerdict + `, queue_admit_per_second IS NOT NULL AS queued
		FROM events WHERE id = $1::bigint FOR UPDATE`

	// qInsertConfirmed inserts a booking confirmed at once; the stock
	// trigger takes its tickets. $7 is the pass's place ('' for none).
	qInsertConfirmed = `INSERT INTO bookings (event_id, user_email, buyer_key, client_addr, quantity, total_amount, booking_status, queue_place)
		VALUES ($1, $2, $3, $4::inet, $5, $6, 'confirmed', nullif($7, '')) RETURNING id`
)

type eventRow struct {
	ID               int64         `db:"id"`
	Name             string        `db:"name"`
	Description      string        `db:"description"`
	EventDate        time.Time     `db:"event_date"`
	TotalTickets     int           `db:"total_tickets"`
	AvailableTickets int           `db:"available_tickets"`
	TicketPrice      money.Cents   `db:"ticket_price"`
	OnSaleAt         sql.NullTime  `db:"on_sale_at"`
	OffSaleAt        sql.NullTime  `db:"off_sale_at"`
	AdmitPerSecond   sql.NullInt64 `db:"queue_admit_per_second"`
	PassTTLSeconds   sql.NullInt64 `db:"queue_pass_ttl_seconds"`
}

func (r eventRow) event() booking.Event {
	ev := booking.Event{
		ID: r.ID, Name: r.Name, Description: r.Description, EventDate: r.EventDate.UTC(),
		TotalTickets: r.TotalTickets, AvailableTickets: r.AvailableTickets, TicketPrice: r.TicketPrice,
		OnSaleAt: nullTime(r.OnSaleAt), OffSaleAt: nullTime(r.OffSaleAt),
	}
	if r.AdmitPerSecond.Valid {
		ev.Queue = &booking.QueueSettings{AdmitPerSecond: int(r.AdmitPerSecond.Int64), PassTTL: booking.Seconds(r.PassTTLSeconds.Int64)}
	}
	return ev
}

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// Events returns up to limit events with id > after, in id order.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]booking.Event, error) {
	var rows []eventRow
	if err := s.db.SelectContext(ctx, &rows, qEvents, after, limit); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]booking.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, nil
}

// Event returns one event, or booking.ErrEventNotFound.
func (s *Store) Event(ctx context.Context, id int64) (booking.Event, error) {
	if !validID(id) {
		return booking.Event{}, booking.ErrEventNotFound
	}
	var r eventRow
	if err := s.db.GetContext(ctx, &r, qEvent, id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return booking.Event{}, booking.ErrEventNotFound
		}
		return booking.Event{}, mapErr(ctx, err)
	}
	return r.event(), nil
}

type stockRow struct {
	Available int         `db:"available_tickets"`
	Price     money.Cents `db:"ticket_price"`
	// Queued: the event has a waiting room. Only qStockLocked reads it;
	// the seed's unsafe path knows nothing of queues.
	Queued bool   `db:"queued"`
	Sale   string `db:"sale"` // the sale window's verdict: qSaleVerdict
}

// BookUnsafe is the seed's race: read the stock without a lock, work, then
// insert. Concurrent buyers all read the same stock and all succeed, unless
// the event's oversell guard makes the database refuse.
func (s *Store) BookUnsafe(ctx context.Context, o booking.Order, work time.Duration) (booking.Booking, error) {
	if !validID(o.EventID) {
		return booking.Booking{}, booking.ErrEventNotFound
	}
	var b booking.Booking
	err := runTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var err error
		b, _, err = s.book(ctx, tx, qStockUnlocked, o, work, false)
		return err
	})
	return b, err
}

// BookLocked locks the event row, works, checks the stock and inserts a
// confirmed booking, all in one transaction: it never oversells. With a key,
// the response rendered by render is kept in the same transaction; a sold-out
// or missing event is then an outcome to keep, not a failure.
func (s *Store) BookLocked(ctx context.Context, o booking.Order, work time.Duration, key *idempotency.Key, render booking.Render) (booking.Outcome, error) {
	var out booking.Outcome
	var expiredN int
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		out, expiredN = booking.Outcome{}, 0
		if key != nil {
			replay, err := claimKey(ctx, tx, key)
			if err != nil || replay != nil {
				out.Replay = replay
				return err
			}
		}
		b, n, err := s.book(ctx, tx, qStockLocked, o, work, true)
		expiredN = n
		switch {
		case err == nil:
			b.Message = booking.SafeMessage
			out.Booking = b
		case errors.Is(err, booking.ErrSoldOut), errors.Is(err, booking.ErrEventNotFound),
			errors.Is(err, booking.ErrLimitExceeded), errors.Is(err, booking.ErrClientLimitExceeded), booking.IsSaleErr(err),
			isInvalid(err), pass.IsRefusal(err):
			out.Err = err
		default:
			return err
		}
		if key != nil {
			return keepKey(ctx, tx, key, render(out.Booking, out.Err))
		}
		return nil
	})
	if err == nil {
		s.counters.HoldsExpired(expiredN)
	}
	return out, err
}

// book reads the stock with readStock, works, checks and inserts. Locked
// (readStock holds the event row), it also enforces the caps and, when the
// stock is short or a cap is reached, first expires the event's lapsed
// holds, as a batch of holds does; it returns how many it expired.
func (s *Store) book(ctx context.Context, tx *sqlx.Tx, readStock string, o booking.Order, work time.Duration, locked bool) (booking.Booking, int, error) {
	var st stockRow
	if err := tx.GetContext(ctx, &st, readStock, o.EventID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return booking.Booking{}, 0, booking.ErrEventNotFound
		}
		return booking.Booking{}, 0, mapErr(ctx, err)
	}
	if err := booking.SaleErr(st.Sale); err != nil {
		return booking.Booking{}, 0, err
	}
	if st.Queued {
		if err := admitted(ctx, tx, o); err != nil {
			return booking.Booking{}, 0, err
		}
	}
	if err := sleep(ctx, work); err != nil {
		return booking.Booking{}, 0, err
	}
	var limits *caps
	expiredN := 0
	if locked {
		var err error
		if limits, err = s.readCaps(ctx, tx, o.EventID, []booking.Order{o}); err != nil {
			return booking.Booking{}, 0, err
		}
		if st.Available < o.Quantity || limits.refusal(o) != nil {
			gone, err := expireLapsed(ctx, tx, o.EventID, &st.Available)
			if err != nil {
				return booking.Booking{}, 0, err
			}
			expiredN = gone.holds
			limits.forget(gone)
		}
	}
	if st.Available < o.Quantity {
		return booking.Booking{}, expiredN, booking.ErrSoldOut
	}
	total, err := orderTotal(st.Price, o.Quantity)
	if err != nil {
		return booking.Booking{}, expiredN, err
	}
	if err := limits.refusal(o); err != nil {
		return booking.Booking{}, expiredN, err
	}
	var id int64
	err = tx.GetContext(ctx, &id, qInsertConfirmed, o.EventID, o.Email, booking.BuyerKey(o.Email), inetArg(clientAddr(o)), o.Quantity, total, o.Pass.Place)
	if err != nil {
		err = mapErr(ctx, err)
		if errors.Is(err, errStockGuard) {
			return booking.Booking{}, expiredN, fmt.Errorf("%w (%v)", booking.ErrSoldOut, err)
		}
		return booking.Booking{}, expiredN, err
	}
	return booking.Booking{
		BookingID: id, EventID: o.EventID, UserEmail: o.Email, Quantity: o.Quantity,
		TotalAmount: total, RemainingTickets: st.Available - o.Quantity,
	}, expiredN, nil
}

// maxTotal is the largest amount total_amount, a NUMERIC(10,2), can hold.
const maxTotal money.Cents = 99_999_999_99

// orderTotal is price x quantity, or an invalid_request error when the
// bookings table could not store it: the request's own error, not a fault
// that would fail the transaction (and a whole batch with it).
func orderTotal(price money.Cents, quantity int) (money.Cents, error) {
	total, err := price.Times(int64(quantity))
	if err != nil || total > maxTotal {
		return 0, problem.Invalidf("the total of %d tickets at %s is more than one booking can hold", quantity, price)
	}
	return total, nil
}

// isInvalid reports whether err is a 400 of the request's own.
func isInvalid(err error) bool {
	return errors.Is(err, problem.Invalid)
}

// qUsedPlaces returns those of the places ($2) that already have a
// confirmed booking of the event: their passes are used. Each place is its
// own probe of the (event_id, queue_place) index; written as queue_place =
// ANY ($2), the planner may read all the event's placed bookings instead.
const qUsedPlaces = `SELECT u.place FROM unnest($2::text[]) AS u(place)
	WHERE EXISTS (SELECT 1 FROM bookings b
	              WHERE b.event_id = $1::bigint AND b.queue_place = u.place AND b.queue_place IS NOT NULL
	                AND b.booking_status = 'confirmed')`

// usedPlaces reads, inside tx, which of places have a confirmed booking of
// the event.
func usedPlaces(ctx context.Context, tx *sqlx.Tx, eventID int64, places []string) (map[string]bool, error) {
	if len(places) == 0 {
		return nil, nil
	}
	var used []string
	if err := tx.SelectContext(ctx, &used, qUsedPlaces, eventID, pq.Array(places)); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make(map[string]bool, len(used))
	for _, p := range used {
		out[p] = true
	}
	return out, nil
}

// admitted is the waiting room's check of an order for a queued event,
// inside tx, which holds the event row: a good pass whose place has no
// confirmed booking yet. hold_batch makes the same check.
func admitted(ctx context.Context, tx *sqlx.Tx, o booking.Order) error {
	if o.Pass.Place == "" {
		return o.Pass.Refusal()
	}
	used, err := usedPlaces(ctx, tx, o.EventID, []string{o.Pass.Place})
	if err != nil {
		return err
	}
	if used[o.Pass.Place] {
		return pass.ErrUsed
	}
	return nil
}

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
	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
)

// Store is holdfast's PostgreSQL storage.
type Store struct {
	db       *sqlx.DB
	counters Counters
	// ticketCap is the most tickets of one event one buyer may hold or
	// own; 0 is no cap.
	ticketCap int
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
// compared case-folded) may hold or have confirmed; 0 lifts the cap. It is
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
// database's clock: ” while on sale, else the error code.
const qSaleVerdict = `CASE WHEN on_sale_at > clock_timestamp() THEN 'not_on_sale'
		WHEN off_sale_at <= clock_timestamp() THEN 'sale_closed' ELSE '' END AS sale`

const (
	qEvents = `SELECT ` + eventColumns + ` FROM events WHERE id > $1::bigint ORDER BY id LIMIT $2`
	qEvent  = `SELECT ` + eventColumns + ` FROM events WHERE id = $1`

	// qStockUnlocked is the seed's unsafe read: no lock, so any number of
	// buyers read the same stock.
	qStockUnlocked = `SELECT available_tickets, ticket_price, ` + qSaleVerdict + ` FROM events WHERE id = $1::bigint`
	// qStockLocked locks the event row until the transaction ends.
	qStockLocked = `SELECT available_tickets, ticket_price, ` + qSaleVerdict + ` FROM events WHERE id = $1::bigint FOR UPDATE`

	// qInsertConfirmed inserts a booking confirmed at once; the stock
	// trigger takes its tickets.
	qInsertConfirmed = `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
		VALUES ($1, $2, $3, $4, 'confirmed') RETURNING id`
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
	Sale      string      `db:"sale"` // the sale window's verdict: qSaleVerdict
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
		b, err = book(ctx, tx, qStockUnlocked, o, work, 0)
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
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		out = booking.Outcome{}
		if key != nil {
			replay, err := claimKey(ctx, tx, key)
			if err != nil || replay != nil {
				out.Replay = replay
				return err
			}
		}
		b, err := book(ctx, tx, qStockLocked, o, work, s.ticketCap)
		switch {
		case err == nil:
			b.Message = booking.SafeMessage
			out.Booking = b
		case errors.Is(err, booking.ErrSoldOut), errors.Is(err, booking.ErrEventNotFound),
			errors.Is(err, booking.ErrLimitExceeded), booking.IsSaleErr(err), isInvalid(err):
			out.Err = err
		default:
			return err
		}
		if key != nil {
			return keepKey(ctx, tx, key, render(out.Booking, out.Err))
		}
		return nil
	})
	return out, err
}

// book reads the stock with readStock, works, checks (the stock, and the
// buyer's cap when ticketCap > 0) and inserts.
func book(ctx context.Context, tx *sqlx.Tx, readStock string, o booking.Order, work time.Duration, ticketCap int) (booking.Booking, error) {
	var st stockRow
	if err := tx.GetContext(ctx, &st, readStock, o.EventID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return booking.Booking{}, booking.ErrEventNotFound
		}
		return booking.Booking{}, mapErr(ctx, err)
	}
	if err := booking.SaleErr(st.Sale); err != nil {
		return booking.Booking{}, err
	}
	if err := sleep(ctx, work); err != nil {
		return booking.Booking{}, err
	}
	if st.Available < o.Quantity {
		return booking.Booking{}, booking.ErrSoldOut
	}
	if ticketCap > 0 {
		b, err := buyersTickets(ctx, tx, o.EventID, []string{o.Email})
		if err != nil {
			return booking.Booking{}, err
		}
		if b.owned[b.key(o.Email)]+o.Quantity > ticketCap {
			return booking.Booking{}, booking.ErrLimitExceeded
		}
	}
	total, err := orderTotal(st.Price, o.Quantity)
	if err != nil {
		return booking.Booking{}, err
	}
	var id int64
	if err := tx.GetContext(ctx, &id, qInsertConfirmed, o.EventID, o.Email, o.Quantity, total); err != nil {
		err = mapErr(ctx, err)
		if errors.Is(err, errStockGuard) {
			return booking.Booking{}, fmt.Errorf("%w (%v)", booking.ErrSoldOut, err)
		}
		return booking.Booking{}, err
	}
	return booking.Booking{
		BookingID: id, EventID: o.EventID, UserEmail: o.Email, Quantity: o.Quantity,
		TotalAmount: total, RemainingTickets: st.Available - o.Quantity,
	}, nil
}

// maxTotal is the largest amount total_amount, a NUMERIC(10,2), can hold.
const maxTotal money.Cents = 99_999_999_99

// orderTotal is price x quantity, or an invalid_request error when the
// bookings table could not store it: the request's own error, not a fault
// that would fail the transaction (and a whole batch with it).
func orderTotal(price money.Cents, quantity int) (money.Cents, error) {
	total, err := price.Times(int64(quantity))
	if err != nil || total > maxTotal {
		return 0, httpapi.Invalid("the total of %d tickets at %s is more than one booking can hold", quantity, price)
	}
	return total, nil
}

// isInvalid reports whether err is a 400 of the request's own.
func isInvalid(err error) bool {
	var e *httpapi.Error
	return errors.As(err, &e) && e.Code == httpapi.CodeInvalid
}

// qBuyersTickets sums each buyer's tickets of an event, confirmed or
// pending. Emails are folded by the database, the same lower() the index
// holds, and each given email comes back with its folding, so Go never
// folds on its own (its rules and the database locale's can differ). A
// pending hold counts even once it has lapsed: until it is swept or
// expired it may still be confirmed by a confirm already in flight.
const qBuyersTickets = `SELECT u.email, lower(u.email) AS folded,
	coalesce((SELECT sum(b.quantity) FROM bookings b
	          WHERE b.event_id = $1::bigint AND lower(b.user_email) = lower(u.email)
	            AND b.booking_status IN ('pending', 'confirmed')), 0) AS tickets
	FROM unnest($2::text[]) AS u(email)`

// buyers is what each buyer of a batch owns of one event, keyed by the
// database's folding of their email.
type buyers struct {
	folded map[string]string // email as sent -> folded
	owned  map[string]int    // folded -> tickets
}

// key is the folded form of email, one of those asked for.
func (b buyers) key(email string) string { return b.folded[email] }

// over reports whether o would take its buyer past ticketCap; never for a
// nil b (no cap).
func (b *buyers) over(o booking.Order, ticketCap int) bool {
	return b != nil && b.owned[b.key(o.Email)]+o.Quantity > ticketCap
}

// buyersTickets reads, inside tx (which holds the event row), what each of
// emails owns of the event.
func buyersTickets(ctx context.Context, tx *sqlx.Tx, eventID int64, emails []string) (buyers, error) {
	seen := make(map[string]bool, len(emails))
	distinct := make([]string, 0, len(emails))
	for _, e := range emails {
		if !seen[e] {
			seen[e] = true
			distinct = append(distinct, e)
		}
	}
	var rows []struct {
		Email   string `db:"email"`
		Folded  string `db:"folded"`
		Tickets int    `db:"tickets"`
	}
	if err := tx.SelectContext(ctx, &rows, qBuyersTickets, eventID, pq.Array(distinct)); err != nil {
		return buyers{}, mapErr(ctx, err)
	}
	b := buyers{folded: make(map[string]string, len(rows)), owned: make(map[string]int, len(rows))}
	for _, r := range rows {
		b.folded[r.Email] = r.Folded
		b.owned[r.Folded] = r.Tickets // the same for every spelling of one buyer
	}
	return b, nil
}

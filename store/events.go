package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
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
	// oneCall serves batches without idempotency keys with hold_batch
	// alone; tests switch it off to run it inside the keyed batches'
	// transaction for the same cases.
	oneCall bool
	// stockHorizon gives the queue's stock readings their horizon.
	stockHorizon *readHorizon
}

// Counters hears what committed transactions did to holds, for metrics.
type Counters interface {
	HoldsCreated(n int)
	HoldsConfirmed(n int)
	HoldsReleased(n int)
	HoldsExpired(n int)
	HoldsExtended(n int)
	HoldsCancelled(n int)
}

type noCounters struct{}

func (noCounters) HoldsCreated(int)   {}
func (noCounters) HoldsConfirmed(int) {}
func (noCounters) HoldsReleased(int)  {}
func (noCounters) HoldsExpired(int)   {}
func (noCounters) HoldsExtended(int)  {}
func (noCounters) HoldsCancelled(int) {}

// New returns a Store on db.
func New(db *sqlx.DB) *Store {
	return &Store{db: db, counters: noCounters{}, oneCall: true, stockHorizon: &readHorizon{}}
}

// SetTicketCap sets the most tickets of one event one buyer (an email,
// compared by sale.BuyerKey) may hold or have confirmed; 0 lifts the cap. It is
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
	on_sale_at, off_sale_at, queue_admit_per_second, queue_pass_ttl_seconds,
	coalesce((SELECT json_agg(json_build_object('id', c.id, 'name', c.name, 'price', c.price::text,
			'total_tickets', c.total_tickets, 'available_tickets', c.available_tickets) ORDER BY c.id)
		FROM categories c WHERE c.event_id = events.id), '[]')::text AS categories`

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
	// qLockEvent locks the event row until the transaction ends, so that
	// /book/safe's simulated work happens under it, as in the seed.
	qLockEvent = `SELECT id FROM events WHERE id = $1::bigint FOR UPDATE`
	// qConfirmBooked confirms the hold /book/safe's hold_batch just made,
	// as a booking confirmed at once: no expiry, as the seed's bookings
	// have none. It moves no stock; the event's stock it reads already
	// counts the hold.
	qConfirmBooked = `WITH c AS (
			UPDATE bookings SET booking_status = 'confirmed', expires_at = NULL, updated_at = clock_timestamp()
			WHERE hold_id = $1 AND booking_status = 'pending'
			RETURNING id, event_id)
		SELECT c.id, e.available_tickets FROM c JOIN events e ON e.id = c.event_id`

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
	Categories       categoryList  `db:"categories"`
}

// categoryList reads eventColumns' categories, a JSON array.
type categoryList []sale.Category

// Scan implements sql.Scanner.
func (l *categoryList) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		return fmt.Errorf("store: categories of type %T", src)
	}
	var raw []struct {
		ID        int64  `json:"id"`
		Name      string `json:"name"`
		Price     string `json:"price"`
		Total     int    `json:"total_tickets"`
		Available int    `json:"available_tickets"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("store: categories: %w", err)
	}
	out := make(categoryList, len(raw))
	for i, c := range raw {
		price, err := money.Parse(c.Price)
		if err != nil {
			return fmt.Errorf("store: category %d price %q: %w", c.ID, c.Price, err)
		}
		out[i] = sale.Category{ID: c.ID, Name: c.Name, Price: price, TotalTickets: c.Total, AvailableTickets: c.Available}
	}
	*l = out
	return nil
}

func (r eventRow) event() sale.Event {
	ev := sale.Event{
		ID: r.ID, Name: r.Name, Description: r.Description, EventDate: r.EventDate.UTC(),
		TotalTickets: r.TotalTickets, AvailableTickets: r.AvailableTickets, TicketPrice: r.TicketPrice,
		OnSaleAt: nullTime(r.OnSaleAt), OffSaleAt: nullTime(r.OffSaleAt),
		Categories: []sale.Category(r.Categories),
	}
	if ev.Categories == nil {
		ev.Categories = []sale.Category{}
	}
	if r.AdmitPerSecond.Valid {
		ev.Queue = &sale.QueueSettings{AdmitPerSecond: int(r.AdmitPerSecond.Int64), PassTTL: sale.Seconds(r.PassTTLSeconds.Int64)}
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
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]sale.Event, error) {
	var rows []eventRow
	if err := s.db.SelectContext(ctx, &rows, qEvents, after, limit); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]sale.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, nil
}

// Event returns one event, or sale.ErrEventNotFound.
func (s *Store) Event(ctx context.Context, id int64) (sale.Event, error) {
	if !validID(id) {
		return sale.Event{}, sale.ErrEventNotFound
	}
	var r eventRow
	if err := s.db.GetContext(ctx, &r, qEvent, id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return sale.Event{}, sale.ErrEventNotFound
		}
		return sale.Event{}, mapErr(ctx, err)
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
// the event's oversell guard makes the database refuse. Its check of the
// stock is the seed's, on purpose: it knows nothing of caps or queues, and
// is no writing of the rules that grant tickets (hold_batch is).
func (s *Store) BookUnsafe(ctx context.Context, o sale.Order, work time.Duration) (booking.Booking, error) {
	if !validID(o.EventID) {
		return booking.Booking{}, sale.ErrEventNotFound
	}
	var b booking.Booking
	err := runTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var st stockRow
		if err := tx.GetContext(ctx, &st, qStockUnlocked, o.EventID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return sale.ErrEventNotFound
			}
			return mapErr(ctx, err)
		}
		if err := sale.SaleErr(st.Sale); err != nil {
			return err
		}
		if err := sleep(ctx, work); err != nil {
			return err
		}
		if st.Available < o.Quantity {
			return sale.ErrSoldOut
		}
		total, err := orderTotal(st.Price, o.Quantity)
		if err != nil {
			return err
		}
		var id int64
		err = tx.GetContext(ctx, &id, qInsertConfirmed, o.EventID, o.Email, sale.BuyerKey(o.Email), inetArg(clientAddr(o)), o.Quantity, total, o.Pass.Place)
		if err != nil {
			err = mapErr(ctx, err)
			if errors.Is(err, errStockGuard) {
				return fmt.Errorf("%w (%v)", sale.ErrSoldOut, err)
			}
			return err
		}
		b = booking.Booking{
			BookingID: id, EventID: o.EventID, UserEmail: o.Email, Quantity: o.Quantity,
			TotalAmount: total, RemainingTickets: st.Available - o.Quantity,
		}
		return nil
	})
	return b, err
}

// bookTTL is how long the hold /book/safe takes lasts before it is
// confirmed, in the same transaction: far longer than that takes.
const bookTTL = time.Minute

// BookLocked sells o at once, in one transaction that never oversells: it
// claims the idempotency key, locks the event row, works, takes a hold by
// the one writing of the rules (hold_batch: stock, caps, sale window, the
// waiting room, lapsed holds expired first) and confirms it. With a key,
// the response rendered by render is kept in the same transaction; a
// sold-out or missing event is then an outcome to keep, not a failure.
func (s *Store) BookLocked(ctx context.Context, o sale.Order, work time.Duration, key *idempotency.Key, render booking.Render) (booking.Outcome, error) {
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
		b, n, err := s.book(ctx, tx, o, work)
		expiredN = n
		switch {
		case errors.Is(err, errSeated):
			// The transaction is spent: answered, and no key kept (a 400).
			return sale.ErrSeatsRequired
		case err == nil:
			b.Message = booking.SafeMessage
			out.Booking = b
		case isRefusal(err):
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

// book is BookLocked's sale, in tx: it returns the booking and how many
// lapsed holds hold_batch expired.
func (s *Store) book(ctx context.Context, tx *sqlx.Tx, o sale.Order, work time.Duration) (booking.Booking, int, error) {
	var id int64
	if err := tx.GetContext(ctx, &id, qLockEvent, o.EventID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return booking.Booking{}, 0, sale.ErrEventNotFound
		}
		return booking.Booking{}, 0, mapErr(ctx, err)
	}
	if err := sleep(ctx, work); err != nil {
		return booking.Booking{}, 0, err
	}
	outs, expiredN, err := s.holdBatch(ctx, tx, []int64{o.EventID}, []hold.Request{{Order: o}}, bookTTL, false, false)
	if err != nil {
		return booking.Booking{}, 0, err
	}
	if err := outs[0].Err; err != nil {
		return booking.Booking{}, expiredN, err
	}
	h := outs[0].Hold
	var booked struct {
		ID        int64 `db:"id"`
		Available int   `db:"available_tickets"`
	}
	if err := tx.GetContext(ctx, &booked, qConfirmBooked, h.ID); err != nil {
		return booking.Booking{}, expiredN, mapErr(ctx, err)
	}
	return booking.Booking{
		BookingID: booked.ID, EventID: o.EventID, UserEmail: h.UserEmail, Quantity: h.Quantity,
		TotalAmount: h.TotalAmount, RemainingTickets: booked.Available,
	}, expiredN, nil
}

// isRefusal reports whether err is a request's own outcome (sold out, no
// such event, a cap, the sale window, the waiting room, bad input), to
// answer and keep, rather than a failure of the service.
func isRefusal(err error) bool {
	for _, k := range []problem.Kind{problem.SoldOut, problem.NotFound, problem.LimitExceeded, problem.NotOnSale,
		problem.SaleClosed, problem.Invalid, problem.QueueRequired, problem.PassInvalid, problem.PassExpired, problem.PassUsed,
		problem.CategoryRequired} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
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

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/money"
)

// holdColumns reads a bookings row as a hold. A pending hold whose expiry
// has passed by the database's clock reads expired at once, swept or not.
const holdColumns = `hold_id, event_id, user_email, quantity, total_amount, expires_at, created_at, confirmed_at,
	CASE
		WHEN booking_status = 'pending' AND expires_at <= clock_timestamp() THEN 'expired'
		WHEN booking_status = 'pending' THEN 'pending'
		WHEN booking_status = 'confirmed' THEN 'confirmed'
		WHEN failure_reason = 'expired' THEN 'expired'
		ELSE 'released'
	END AS status`

const (
	qHold = `SELECT ` + holdColumns + ` FROM bookings WHERE hold_id = $1`

	// qExpireLapsed fails the event's lapsed holds, inside a transaction
	// that already holds the event row. Rows another transaction holds (a
	// sweeper, a confirm) are skipped rather than waited for.
	qExpireLapsed = `UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = now()
		WHERE id IN (
			SELECT id FROM bookings
			WHERE event_id = $1::bigint AND booking_status = 'pending' AND expires_at <= now()
			FOR UPDATE SKIP LOCKED)
		RETURNING lower(user_email) AS folded, quantity`

	qAvailable = `SELECT available_tickets FROM events WHERE id = $1::bigint`

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
}

func (r holdRow) hold() hold.Hold {
	h := hold.Hold{
		ID: r.ID, EventID: r.EventID, UserEmail: r.UserEmail, Quantity: r.Quantity,
		TotalAmount: r.TotalAmount, Status: hold.Status(r.Status),
		ExpiresAt: r.ExpiresAt.Time.UTC(), CreatedAt: r.CreatedAt.UTC(),
	}
	if r.ConfirmedAt.Valid {
		t := r.ConfirmedAt.Time.UTC()
		h.ConfirmedAt = &t
	}
	return h
}

// CreateHolds serves reqs for one event, in order, in one transaction that
// locks the event row first, inserts every hold it grants in one statement
// and commits once. Each request gets its own outcome; a request's failure
// (sold out, a reused idempotency key) does not touch the others.
//
// A batch without idempotency keys, the common case on sale day, is one
// call of the database's hold_batch: one round trip, and the event row is
// never locked across the network. A batch with keys also claims and keeps
// them, in a transaction of several statements.
func (s *Store) CreateHolds(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
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

// qHoldBatch runs schema/006_hold_batch.sql's function, which answers each
// request with one row in order.
const qHoldBatch = `SELECT n, outcome, price, expired,
	hold_id, event_id, user_email, quantity, total_amount, expires_at, created_at, confirmed_at, status
	FROM hold_batch($1::bigint, $2::text[], $3::int[], $4::bigint, $5::int)
	ORDER BY n`

// createHoldsInOneCall is CreateHolds for a batch without idempotency keys.
// Run outside a transaction, the statement commits on its own.
func (s *Store) createHoldsInOneCall(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration) ([]hold.Outcome, error) {
	emails := make([]string, len(reqs))
	qtys := make([]int64, len(reqs))
	for i, r := range reqs {
		emails[i], qtys[i] = r.Order.Email, int64(r.Order.Quantity)
	}
	outs := make([]hold.Outcome, len(reqs))
	var created, expiredN int
	err := retrying(ctx, func() error {
		clear(outs)
		created, expiredN = 0, 0
		// Never run twice by database/sql: see once.
		conn, err := s.once(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		rows, err := conn.QueryContext(ctx, qHoldBatch, eventID, pq.Array(emails), pq.Array(qtys), ttl.Microseconds(), s.ticketCap)
		if err != nil {
			return mapErr(ctx, err)
		}
		defer rows.Close()
		seen := 0
		for rows.Next() {
			var r batchRow
			if err := rows.Scan(r.dest()...); err != nil {
				return mapErr(ctx, err)
			}
			if r.N != seen+1 || r.N > len(reqs) {
				return fmt.Errorf("store: hold_batch answered request %d after %d of %d", r.N, seen, len(reqs))
			}
			seen = r.N
			expiredN = r.Expired
			out, err := r.outcome(reqs[r.N-1].Order)
			if err != nil {
				return err
			}
			if out.Err == nil {
				created++
			}
			outs[r.N-1] = out
		}
		if err := rows.Err(); err != nil {
			return mapErr(ctx, err)
		}
		if seen != len(reqs) {
			return fmt.Errorf("store: hold_batch answered %d of %d requests", seen, len(reqs))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.counters.HoldsCreated(created)
	s.counters.HoldsExpired(expiredN)
	return outs, nil
}

// batchRow is one row of hold_batch: a request's outcome and, when it was
// held, the hold.
type batchRow struct {
	N         int
	Outcome   string
	Price     sql.NullString
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
}

func (r *batchRow) dest() []any {
	return []any{&r.N, &r.Outcome, &r.Price, &r.Expired, &r.ID, &r.EventID, &r.Email, &r.Quantity,
		&r.Total, &r.ExpiresAt, &r.CreatedAt, &r.Confirmed, &r.Status}
}

// outcome is the row as the answer to the request for o.
func (r *batchRow) outcome(o booking.Order) (hold.Outcome, error) {
	switch r.Outcome {
	case "held":
		total, err := money.Parse(r.Total.String)
		if err != nil {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch total %q: %w", r.Total.String, err)
		}
		if !r.ID.Valid || r.Email.String != o.Email || int(r.Quantity.Int64) != o.Quantity {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch answered request %d with another's hold", r.N)
		}
		return hold.Outcome{Hold: holdRow{
			ID: r.ID.UUID, EventID: r.EventID.Int64, UserEmail: r.Email.String, Quantity: int(r.Quantity.Int64),
			TotalAmount: total, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt.Time, ConfirmedAt: r.Confirmed,
			Status: r.Status.String,
		}.hold()}, nil
	case "sold_out":
		return hold.Outcome{Err: hold.ErrSoldOut}, nil
	case "limit_exceeded":
		return hold.Outcome{Err: booking.ErrLimitExceeded}, nil
	case "not_found":
		return hold.Outcome{Err: booking.ErrEventNotFound}, nil
	case "too_large":
		price, err := money.Parse(r.Price.String)
		if err != nil {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch price %q: %w", r.Price.String, err)
		}
		_, err = orderTotal(price, o.Quantity)
		if err == nil {
			return hold.Outcome{}, fmt.Errorf("store: hold_batch found %d x %s too large, Go does not", o.Quantity, price)
		}
		return hold.Outcome{Err: err}, nil
	}
	return hold.Outcome{}, fmt.Errorf("store: hold_batch answered %q", r.Outcome)
}

// createHoldsInTx is CreateHolds for a batch with idempotency keys.
func (s *Store) createHoldsInTx(ctx context.Context, eventID int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
	outs := make([]hold.Outcome, len(reqs))
	var created, expiredN int
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		clear(outs)
		created, expiredN = 0, 0
		var st stockRow
		err := tx.GetContext(ctx, &st, qStockLocked, eventID)
		missing := errors.Is(err, sql.ErrNoRows)
		if err != nil && !missing {
			return mapErr(ctx, err)
		}
		keys, err := claimKeys(ctx, tx, reqs, outs)
		if err != nil {
			return err
		}
		var owners *buyers
		if s.ticketCap > 0 && !missing {
			emails := make([]string, 0, len(reqs))
			for _, r := range reqs {
				emails = append(emails, r.Order.Email)
			}
			b, err := buyersTickets(ctx, tx, eventID, emails)
			if err != nil {
				return err
			}
			owners = &b
		}
		// Grant in order of arrival while the stock lasts.
		var granted []int
		expired := false
		for i, req := range reqs {
			out := &outs[i]
			if _, repeat := keys.repeats[i]; repeat {
				continue // answered with its first request's outcome
			}
			switch {
			case out.Replay != nil || out.Err != nil:
				continue
			case missing:
				out.Err = booking.ErrEventNotFound
				continue
			case !expired && (st.Available < req.Order.Quantity || owners.over(req.Order, s.ticketCap)):
				// Short of stock, or over the cap: give lapsed holds back
				// first, so nobody is told sold out or limit_exceeded
				// only because the sweeper has not run yet.
				expired = true
				gone, err := expireLapsed(ctx, tx, eventID, &st.Available)
				if err != nil {
					return err
				}
				expiredN = gone.holds
				if gone.holds > 0 {
					// The re-read stock is the database's, which has not
					// yet seen this batch's grants: they are inserted
					// after the loop.
					for _, g := range granted {
						st.Available -= reqs[g].Order.Quantity
					}
					// Nor do the expired holds count against their buyers.
					if owners != nil {
						for buyer, n := range gone.tickets {
							if _, ok := owners.owned[buyer]; ok {
								owners.owned[buyer] -= n
							}
						}
					}
				}
			}
			if st.Available < req.Order.Quantity {
				out.Err = hold.ErrSoldOut
				continue
			}
			if _, err := orderTotal(st.Price, req.Order.Quantity); err != nil {
				out.Err = err
				continue
			}
			if owners.over(req.Order, s.ticketCap) {
				out.Err = booking.ErrLimitExceeded
				continue
			}
			if owners != nil {
				owners.owned[owners.key(req.Order.Email)] += req.Order.Quantity
			}
			st.Available -= req.Order.Quantity
			granted = append(granted, i)
		}
		if err := insertHolds(ctx, tx, eventID, st.Price, reqs, granted, outs, ttl); err != nil {
			return err
		}
		created = len(granted)
		return keepKeys(ctx, tx, reqs, keys, outs, render)
	})
	if err != nil {
		return nil, err
	}
	s.counters.HoldsCreated(created)
	s.counters.HoldsExpired(expiredN)
	return outs, nil
}

// qInsertHolds inserts a batch of pending holds, in the order given, with
// expiries from the database's clock. The statement-level stock trigger
// takes all their tickets in one update of the event row.
const qInsertHolds = `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at)
	SELECT $1::bigint, u.email, u.quantity, u.total, 'pending', clock_timestamp() + $5 * interval '1 microsecond'
	FROM unnest($2::text[], $3::int[], $4::numeric[]) WITH ORDINALITY AS u(email, quantity, total, n)
	ORDER BY u.n
	RETURNING ` + holdColumns

// insertHolds inserts the granted requests' holds and fills their outcomes.
func insertHolds(ctx context.Context, tx *sqlx.Tx, eventID int64, price money.Cents, reqs []hold.Request, granted []int, outs []hold.Outcome, ttl time.Duration) error {
	if len(granted) == 0 {
		return nil
	}
	emails := make([]string, len(granted))
	qtys := make([]int64, len(granted))
	totals := make([]string, len(granted))
	for j, i := range granted {
		o := reqs[i].Order
		total, err := orderTotal(price, o.Quantity)
		if err != nil {
			return err
		}
		emails[j], qtys[j], totals[j] = o.Email, int64(o.Quantity), total.String()
	}
	var rows []holdRow
	err := tx.SelectContext(ctx, &rows, qInsertHolds, eventID, pq.Array(emails), pq.Array(qtys), pq.Array(totals), ttl.Microseconds())
	if err != nil {
		// The stock was checked under the row lock; the guard firing here
		// means something outside holdfast changed it. Fail safe.
		return mapErr(ctx, err)
	}
	if len(rows) != len(granted) {
		return fmt.Errorf("store: inserted %d holds, want %d", len(rows), len(granted))
	}
	for j, i := range granted {
		r := rows[j]
		if r.UserEmail != emails[j] || int64(r.Quantity) != qtys[j] {
			return fmt.Errorf("store: inserted holds came back out of order")
		}
		outs[i].Hold = r.hold()
	}
	return nil
}

// expiredHolds is what expireLapsed failed: how many holds, and their
// tickets by buyer (folded by the database).
type expiredHolds struct {
	holds   int
	tickets map[string]int
}

// expireLapsed fails the event's lapsed holds, re-reads its stock into
// available, and returns what it expired.
func expireLapsed(ctx context.Context, tx *sqlx.Tx, eventID int64, available *int) (expiredHolds, error) {
	var rows []struct {
		Folded   string `db:"folded"`
		Quantity int    `db:"quantity"`
	}
	if err := tx.SelectContext(ctx, &rows, qExpireLapsed, eventID); err != nil {
		return expiredHolds{}, mapErr(ctx, err)
	}
	gone := expiredHolds{holds: len(rows), tickets: map[string]int{}}
	for _, r := range rows {
		gone.tickets[r.Folded] += r.Quantity
	}
	if gone.holds == 0 {
		return gone, nil
	}
	return gone, mapErr(ctx, tx.GetContext(ctx, available, qAvailable, eventID))
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
	h := r.hold()
	if h.Status == hold.StatusConfirmed {
		if err := settle(ctx, conn); err != nil {
			return hold.Hold{}, err
		}
	}
	return h, nil
}

// Confirm confirms a hold in one transaction with its idempotency key.
func (s *Store) Confirm(ctx context.Context, id uuid.UUID, key *idempotency.Key, render hold.Render) (hold.Outcome, error) {
	var out hold.Outcome
	var change holdChange
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		out, change = hold.Outcome{}, unchanged
		if key != nil {
			replay, err := claimKey(ctx, tx, key)
			if err != nil || replay != nil {
				out.Replay = replay
				return err
			}
		}
		var err error
		out.Hold, change, err = confirmTx(ctx, tx, id)
		if err != nil && !errors.Is(err, hold.ErrExpired) && !errors.Is(err, hold.ErrReleased) && !errors.Is(err, hold.ErrNotFound) {
			return err
		}
		out.Err = err
		if key != nil {
			return keepKey(ctx, tx, key, render(out.Hold, out.Err))
		}
		return nil
	})
	if err == nil {
		s.count(change)
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
)

func (s *Store) count(c holdChange) {
	switch c {
	case confirmed:
		s.counters.HoldsConfirmed(1)
	case released:
		s.counters.HoldsReleased(1)
	case expired:
		s.counters.HoldsExpired(1)
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
		return r.hold(), confirmed, nil
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
	case st.Status == "failed" && st.Reason == "expired":
		return hold.Hold{}, unchanged, hold.ErrExpired
	case st.Status == "failed":
		return hold.Hold{}, unchanged, hold.ErrReleased
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
	return r.hold(), confirmed, nil
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
	return r.hold(), nil
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

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
)

// The rest of a hold's life: extend and cancel.
const (
	// qExtend moves a pending hold's expiry to $2 from now, capped at $3
	// after it was made, in one statement that checks, by the database's
	// clock at this moment, that it is pending, unexpired and below its
	// cap. greatest keeps an expiry from moving earlier (a shorter
	// --hold-ttl since the hold was made). It locks only the booking row:
	// extending moves no stock. The schema's bookings_lapsed_stays (012)
	// refuses it if the expiry passed between this check and the update.
	qExtend = `UPDATE bookings SET
			expires_at = greatest(expires_at, least(clock_timestamp() + $2 * interval '1 microsecond',
			                                        created_at + $3 * interval '1 microsecond')),
			updated_at = clock_timestamp()
		WHERE hold_id = $1 AND booking_status = 'pending' AND expires_at > clock_timestamp()
			AND expires_at < created_at + $3 * interval '1 microsecond'
		RETURNING ` + holdColumns

	// qLockForExtend is qLockHold with whether the hold is at its cap (a
	// hold without created_at, made by plain SQL, has no room to grow).
	qLockForExtend = `SELECT booking_status, coalesce(failure_reason, '') AS failure_reason,
		coalesce(expires_at <= clock_timestamp(), false) AS lapsed,
		NOT coalesce(expires_at < created_at + $2 * interval '1 microsecond', false) AS at_limit
		FROM bookings WHERE hold_id = $1 FOR UPDATE`

	// qCancel fails a confirmed booking as cancelled; the stock trigger
	// gives its tickets back. It keeps, in confirmed_at, that the booking
	// was confirmed: a /book/safe booking, confirmed with none (as the
	// seed's were), gets its last change's time, its confirm's; its pass
	// stays used (schema/028).
	qCancel = `UPDATE bookings SET booking_status = 'failed', failure_reason = 'cancelled',
		confirmed_at = coalesce(confirmed_at, updated_at, created_at), updated_at = clock_timestamp()
		WHERE hold_id = $1 AND booking_status = 'confirmed'`
)

// Extend extends a hold in one transaction with its idempotency key; see
// hold.Service.Extend.
func (s *Store) Extend(ctx context.Context, id uuid.UUID, ttl, max time.Duration, key *idempotency.Key, render hold.Render) (hold.Outcome, error) {
	return s.changeHold(ctx, key, render, func(tx *sqlx.Tx) (hold.Hold, holdChange, error) {
		return extendTx(ctx, tx, id, ttl, max)
	})
}

// refusal reports whether err is a hold's answer to confirm or extend, kept with its
// idempotency key and committed (an expired hold's failing with it), rather
// than a failure of the transaction.
func refusal(err error) bool {
	for _, e := range []error{hold.ErrNotFound, hold.ErrExpired, hold.ErrReleased, hold.ErrConfirmedNoExtend,
		hold.ErrExtendLimit, hold.ErrCancelled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

type extendState struct {
	holdState
	AtLimit bool `db:"at_limit"`
}

// ExtendTx is the body of Extend, run in the caller's transaction (tests use
// it to hold an extend open). A hold past its expiry is failed as expired
// here, in tx, and ErrExpired returned.
func (s *Store) ExtendTx(ctx context.Context, tx *sqlx.Tx, id uuid.UUID, ttl, max time.Duration) (hold.Hold, error) {
	h, _, err := extendTx(ctx, tx, id, ttl, max)
	return h, err
}

func extendTx(ctx context.Context, tx *sqlx.Tx, id uuid.UUID, ttl, max time.Duration) (hold.Hold, holdChange, error) {
	var r holdRow
	err := tx.GetContext(ctx, &r, qExtend, id, ttl.Microseconds(), max.Microseconds())
	if err == nil {
		h, err := r.hold()
		return h, extended, err
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return hold.Hold{}, unchanged, mapHoldErr(ctx, err)
	}
	// Not extendable as it stands: lock the hold and find out why.
	var st extendState
	if err := tx.GetContext(ctx, &st, qLockForExtend, id, max.Microseconds()); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return hold.Hold{}, unchanged, hold.ErrNotFound
		}
		return hold.Hold{}, unchanged, mapErr(ctx, err)
	}
	switch {
	case st.Status == "confirmed":
		return hold.Hold{}, unchanged, hold.ErrConfirmedNoExtend
	case st.Status == "failed":
		return hold.Hold{}, unchanged, failedErr(st.Reason)
	case st.Lapsed:
		if err := failHold(ctx, tx, id, "expired"); err != nil {
			return hold.Hold{}, unchanged, err
		}
		return hold.Hold{}, expired, hold.ErrExpired
	case st.AtLimit:
		return hold.Hold{}, unchanged, hold.ErrExtendLimit
	}
	// Pending, unexpired and below its cap: the first statement raced a
	// change that has since settled. Try it once more under the lock; if
	// the expiry passed in between, the transaction runs again and finds
	// the hold lapsed.
	err = tx.GetContext(ctx, &r, qExtend, id, ttl.Microseconds(), max.Microseconds())
	if errors.Is(err, sql.ErrNoRows) {
		return hold.Hold{}, unchanged, fmt.Errorf("%w: hold %s lapsed while extended", errRetry, id)
	}
	if err != nil {
		return hold.Hold{}, unchanged, mapHoldErr(ctx, err)
	}
	h, err := r.hold()
	return h, extended, err
}

// failedErr is the refusal of a request on a failed hold, by why it failed.
func failedErr(reason string) error {
	switch reason {
	case "expired":
		return hold.ErrExpired
	case "cancelled":
		return hold.ErrCancelled
	}
	return hold.ErrReleased
}

// Cancel fails a confirmed booking as cancelled, so the stock trigger gives
// its tickets back; see hold.Service.Cancel. The row lock makes concurrent
// cancels of one booking wait for each other: the first fails it, the
// others find it cancelled and answer it as it is, and the failed row can
// never change again (schema 004), so its tickets come back once.
func (s *Store) Cancel(ctx context.Context, id uuid.UUID) (hold.Hold, error) {
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
			if _, err := tx.ExecContext(ctx, qCancel, id); err != nil {
				return mapErr(ctx, err)
			}
			change = cancelled
		case st.Status == "failed" && st.Reason == "cancelled":
			// Again on a cancelled booking: the same answer.
		case st.Status == "failed":
			return failedErr(st.Reason)
		case st.Lapsed:
			// A lapsed hold the sweeper has not reached: expire it now,
			// as release does, and say so.
			if err := failHold(ctx, tx, id, "expired"); err != nil {
				return err
			}
			change = expired
			return nil
		default:
			return hold.ErrNotConfirmed
		}
		h, err = readHold(ctx, tx, id)
		return err
	})
	if err != nil {
		return hold.Hold{}, err
	}
	s.count(change)
	if change == expired {
		return hold.Hold{}, hold.ErrExpired
	}
	return h, nil
}

package store

import (
	"context"
	"errors"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/hold"
)

const (
	// qLapsedEvents lists events that have lapsed pending holds, through
	// the partial index on pending expiries.
	qLapsedEvents = `SELECT DISTINCT event_id FROM bookings
		WHERE booking_status = 'pending' AND expires_at <= now()
		ORDER BY event_id LIMIT $1`

	// qSweepBatch fails up to $2 lapsed holds of one event, oldest first,
	// skipping rows another transaction holds (a confirm in flight, another
	// sweeper): they are either being confirmed, which must win if it got
	// there first, or being swept already.
	qSweepBatch = `UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = now()
		WHERE id IN (
			SELECT id FROM bookings
			WHERE event_id = $1 AND booking_status = 'pending' AND expires_at <= now()
			ORDER BY expires_at
			LIMIT $2
			FOR UPDATE SKIP LOCKED)`
)

// SweepExpired turns lapsed pending holds failed, so the stock trigger gives
// their tickets back. It works event by event, in batches of at most batch
// holds per transaction, each locking the event row first like every other
// writer; short transactions keep a hot event's buyers from waiting long
// behind a sweep. Any number of sweepers may run at once.
func (s *Store) SweepExpired(ctx context.Context, batch int) (hold.SweepResult, error) {
	var res hold.SweepResult
	var events []int64
	if err := s.db.SelectContext(ctx, &events, qLapsedEvents, 1000); err != nil {
		return res, mapErr(ctx, err)
	}
	for _, ev := range events {
		res.Events++
		for {
			var n int
			err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
				var err error
				n, err = s.SweepBatchTx(ctx, tx, ev, batch)
				return err
			})
			if errors.Is(err, booking.ErrBusy) {
				res.Busy++
				break
			}
			if err != nil {
				return res, err
			}
			res.Expired += n
			if n < batch {
				break
			}
		}
	}
	return res, nil
}

// SweepBatchTx sweeps one batch of one event's lapsed holds in the caller's
// transaction (tests use it to hold a sweep open) and returns how many it
// failed.
func (s *Store) SweepBatchTx(ctx context.Context, tx *sqlx.Tx, eventID int64, batch int) (int, error) {
	var locked int64
	if err := tx.GetContext(ctx, &locked, qLockEvent, eventID); err != nil {
		return 0, mapErr(ctx, err)
	}
	r, err := tx.ExecContext(ctx, qSweepBatch, eventID, batch)
	if err != nil {
		return 0, mapErr(ctx, err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

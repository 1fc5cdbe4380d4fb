package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/sale"
)

const (
	// qLapsedEvents lists events that have lapsed pending holds, through
	// a partial index on pending expiries.
	qLapsedEvents = `SELECT DISTINCT event_id FROM bookings
		WHERE booking_status = 'pending' AND expires_at <= now() AND event_id > $2
		ORDER BY event_id LIMIT $1`

	// qLapsedPlan has qLapsedEvents walk the index rather than go through
	// a bitmap. Every hold confirmed or swept leaves a dead entry in the
	// pending indexes until a vacuum, and once its expiry has passed the
	// listing's range holds it: a bitmap scan fetched every one from the
	// heap on every sweep (50,000 confirmed holds: 2.6 to 3.8 ms a sweep,
	// and no better the next time), where an index scan marks them dead
	// once and then passes over them (0.1 ms).
	qLapsedPlan = `SET LOCAL enable_bitmapscan = off`

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

// lapsedPage is how many events one listing of lapsed holds reads.
const lapsedPage = 1000

// lapsedEvents lists up to lapsedPage events with lapsed holds, of ids
// after after. The listing is a read that decides nothing, so it runs in a
// read-only transaction of its own (for qLapsedPlan) that it rolls back:
// no retries, no wait for a standby.
func (s *Store) lapsedEvents(ctx context.Context, after int64) ([]int64, error) {
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, qLapsedPlan); err != nil {
		return nil, err
	}
	var events []int64
	err = tx.SelectContext(ctx, &events, qLapsedEvents, lapsedPage, after)
	return events, err
}

// SweepExpired turns lapsed pending holds failed, so the stock trigger gives
// their tickets back. It works event by event, in batches of at most batch
// holds per transaction. A batch locks its bookings first and the event row
// only at the end of its one statement, when the stock trigger gives the
// tickets back, so however large the batch, a hot event's buyers wait on a
// sweep only for that last update and the commit. Any number of sweepers
// may run at once.
//
// An event whose sweep fails is listed in the result's Failed and the sweep
// goes on with the next: the error is that event's (the database refusing
// its give-back, say), and the others' holds must still come back on time.
// The error returned is for the sweep as a whole: the events could not be
// listed, or ctx ended.
//
// The events go in two passes. In the first a batch waits for its event's
// row at most sweepQuickLock; an event whose row another transaction holds
// longer (an admin's edit, /book/safe's work, a session left open) waits
// for the second pass, after every other event, with the whole lock
// timeout. In one pass, such an event held up every event after it by a
// lock timeout, each: their holds came back seconds late.
func (s *Store) SweepExpired(ctx context.Context, batch int) (hold.SweepResult, error) {
	var res hold.SweepResult
	defer func() { s.counters.HoldsExpired(res.Expired) }()
	// Page by page, every event with lapsed holds in this run: the ones
	// after the first page's would otherwise wait for later runs, a sweep
	// interval each, when thousands lapse at once.
	var later []int64
	for after := int64(0); ; {
		events, err := s.lapsedEvents(ctx, after)
		if err != nil {
			return res, mapErr(ctx, err)
		}
		res.Events += len(events)
		busy, err := s.sweepPass(ctx, &res, events, batch, sweepQuickLock)
		later = append(later, busy...)
		if err != nil {
			return res, err
		}
		if len(events) < lapsedPage {
			break
		}
		after = events[len(events)-1]
	}
	busy, err := s.sweepPass(ctx, &res, later, batch, 0)
	res.Busy = len(busy)
	return res, err
}

// sweepPass sweeps events, each batch waiting for its event's row at most
// lockWait (0: the session's lock timeout), adds what it expired and what
// failed to res, and answers the events whose rows stayed held. The error
// is ctx's, once it ended.
func (s *Store) sweepPass(ctx context.Context, res *hold.SweepResult, events []int64, batch int, lockWait time.Duration) (busy []int64, err error) {
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return busy, err
		}
		n, held, err := s.sweepEvent(ctx, ev, batch, lockWait)
		res.Expired += n
		if held {
			busy = append(busy, ev)
			if lockWait > 0 {
				continue // its error, if any, is the second pass's
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return busy, err
			}
			res.Failed = append(res.Failed, hold.SweepFailure{EventID: ev, Err: err})
		}
	}
	return busy, nil
}

// sweepQuickLock is how long a batch of the sweep's first pass waits for
// its event's row: longer than a hot event's batches hold it, shorter than
// anything that would make the events after it late.
const sweepQuickLock = 50 * time.Millisecond

// qSweepLockWait sets the lock timeout of one sweep transaction.
const qSweepLockWait = `SELECT set_config('lock_timeout', $1, true)`

// sweepWorkers is how many batches of one event sweep at once (SKIP LOCKED
// keeps their rows apart). Two swept 100,000 holds in about 2.1 s but took
// both cores of a two-core machine while they ran, and buyers of the same
// event waited for CPU: p99 37 to 54 ms, max up to 68 ms. One swept them
// in about 3.1 s and left a core to the buyers: p99 21 to 38 ms, max 38 to
// 60 ms (make bench, three runs each). Since the goal became 2 s (the
// sweep interval plus a second) and the sweeper wakes at the expiry
// itself, two again: see BENCHMARKS.md.
const sweepWorkers = 2

// sweepEvent sweeps one event's lapsed holds until a batch comes back
// short. A batch waits for the event's row at most lockWait, if it is not
// 0 (else the session's lock timeout): busy says one waited in vain.
func (s *Store) sweepEvent(ctx context.Context, ev int64, batch int, lockWait time.Duration) (swept int, busy bool, err error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := 0; w < sweepWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var n int
				err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
					if lockWait > 0 {
						if _, err := tx.ExecContext(ctx, qSweepLockWait, fmt.Sprintf("%dms", lockWait.Milliseconds())); err != nil {
							return mapErr(ctx, err)
						}
					}
					var err error
					n, err = s.SweepBatchTx(ctx, tx, ev, batch)
					return err
				})
				mu.Lock()
				if err == nil {
					swept += n
				}
				switch {
				case errors.Is(err, sale.ErrBusy):
					busy = true
				case err != nil && first == nil:
					first = err
				}
				mu.Unlock()
				if err != nil || n < batch {
					return
				}
			}
		}()
	}
	wg.Wait()
	return swept, busy, first
}

// SweepBatchTx sweeps one batch of one event's lapsed holds in the caller's
// transaction (tests use it to hold a sweep open) and returns how many it
// failed.
func (s *Store) SweepBatchTx(ctx context.Context, tx *sqlx.Tx, eventID int64, batch int) (int, error) {
	r, err := tx.ExecContext(ctx, qSweepBatch, eventID, batch)
	if err != nil {
		return 0, mapErr(ctx, err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

// qNextExpiry is how long until the next pending hold lapses, by the
// database's clock, through the partial index on pending expiries; NULL
// when none is pending.
const qNextExpiry = `SELECT extract(epoch FROM min(expires_at) - clock_timestamp())
	FROM bookings WHERE booking_status = 'pending' AND expires_at > now()`

// NextExpiry is how long until the next pending hold lapses; ok is false
// when no hold is pending.
func (s *Store) NextExpiry(ctx context.Context) (time.Duration, bool, error) {
	var secs sql.NullFloat64
	if err := s.db.GetContext(ctx, &secs, qNextExpiry); err != nil {
		return 0, false, mapErr(ctx, err)
	}
	if !secs.Valid {
		return 0, false, nil
	}
	return max(time.Duration(secs.Float64*float64(time.Second)), 0), true, nil
}

const qSweeperLag = `SELECT coalesce(extract(epoch FROM now() - min(expires_at)), 0)
	FROM bookings WHERE booking_status = 'pending' AND expires_at <= now()`

// SweeperLag is the age of the oldest expired hold still pending: how far
// behind the sweeper is (0 when it is not).
func (s *Store) SweeperLag(ctx context.Context) (time.Duration, error) {
	var secs float64
	if err := s.db.GetContext(ctx, &secs, qSweeperLag); err != nil {
		return 0, mapErr(ctx, err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

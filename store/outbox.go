package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/webhook"
)

// The outbox (schema/014): the triggers on bookings write every hold's
// change into it in the change's own transaction; Publish gives the
// committed ones their feed positions, one publisher at a time, and makes
// their webhook deliveries.

// publishLock is the advisory lock that makes one publisher at a time.
const publishLock = 7_020_315_014

const (
	qPublishLock = `SELECT pg_try_advisory_xact_lock($1)`

	// qBetweenRounds waits for a publish round in progress and keeps the
	// next from starting until the transaction ends. A change of which
	// endpoints take deliveries (one registered, deleted, turned on or
	// off) takes it, so it falls between two rounds, never inside one: a
	// round reads the endpoints when its statement starts, and its events
	// become visible when it commits, so an endpoint registered meanwhile
	// missed events published after its 201, and one a 410 turned off got
	// new deliveries after its pending ones were stopped.
	qBetweenRounds = `SELECT pg_advisory_xact_lock($1)`

	// qPublishBatch reads the oldest unpublished events it sees committed,
	// in write order.
	qPublishBatch = `SELECT n FROM outbox WHERE pos IS NULL ORDER BY n LIMIT $1`

	// qPublish numbers those events ($1, ascending) after the last
	// position given (the previous round committed before this one took
	// the lock, so it sees it), and makes a delivery of each to every
	// enabled endpoint that takes its type. An event's position is the
	// last one plus its distance from the batch's first: increasing in
	// write order within the round, after every earlier round's, and
	// given by a plan no statistics can change (each event found by
	// outbox_unpublished, n = ANY, nothing joined). A round's positions
	// may have holes where the write order has some (a transaction still
	// open, or rolled back); a reader never needs them consecutive. (The
	// batch joined as a subquery was planned, on statistics from when the
	// outbox was small, as a nested loop that ran the numbering once per
	// row: 2.9 s for 2,000 events against 19 ms.)
	qPublish = `WITH published AS (
		UPDATE outbox o
		SET pos = (SELECT coalesce(max(pos), 0) FROM outbox WHERE pos IS NOT NULL) + (o.n - ($1::bigint[])[1]) + 1
		WHERE o.n = ANY ($1::bigint[]) AND o.pos IS NULL
		RETURNING o.pos, o.type
	), deliveries AS (
		INSERT INTO webhook_deliveries (endpoint_id, pos)
		SELECT e.id, p.pos FROM published p
		JOIN webhook_endpoints e ON e.enabled AND (cardinality(e.types) = 0 OR p.type = ANY (e.types))
		ORDER BY p.pos, e.id
	)
	SELECT count(*) FROM published`

	// qPublishPlan keeps statistics from when the outbox was small from
	// planning qPublish's lookup as a sequential scan of the whole outbox,
	// and has qPublishBatch walk outbox_unpublished in order rather than
	// through a bitmap. Every event published leaves a dead entry in that
	// partial index until a vacuum: a bitmap scan fetched them all from
	// the heap again, every round (9.6 ms a round after 100,000 events
	// published, 10 ms a round in the benchmarks after their holds, for
	// rounds that found nothing), while a plain index scan marks the entries
	// it finds dead so the next rounds pass over them.
	qPublishPlan = `SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off`

	// changeColumns reads an outbox row (as o) as an event: the hold as
	// the change left it, its items and seats read like any hold's.
	changeColumns = `o.pos, o.id, o.type, o.at, o.sequence,
		o.hold_id, o.event_id, o.user_email, o.quantity, o.total_amount, o.expires_at,
		coalesce(o.hold_created_at, o.at) AS created_at, o.confirmed_at, o.status,
		coalesce(` + holdItemsOf + `o.booking_id), '') AS items,
		coalesce(` + holdSeatsOf + `o.booking_id), '') AS seats`

	qChanges = `SELECT ` + changeColumns + ` FROM outbox o WHERE o.pos > $1 ORDER BY o.pos LIMIT $2`
)

// qPurgeTake finds and locks the $2 oldest published events older than
// $1 microseconds by the database's clock that have no delivery still
// due, but never the newest published event (the publisher numbers on
// from it, so a position is never given twice). It reads the front of
// outbox_pos only: up to the first event still young (positions follow
// commits, so the old are at the front; with nothing young, up to the
// newest), so a purge that finds nothing old costs a row, not the outbox.
// Events still owed a delivery are passed over, not stopped at: when the
// front was the $2 oldest, that many owed (an endpoint down for longer
// than the retention) stopped every purge behind them.
//
// The lock (FOR UPDATE, passing over what is locked) is what a replay
// waits on: a replay locks its event (FOR KEY SHARE) before it makes the
// new delivery. Read and deleted in one statement, an event could be
// deleted under a replay its snapshot did not see, leaving a due delivery
// of no event, which every claim then locked and never sent.
const qPurgeTake = `SELECT o.pos FROM outbox o
	WHERE o.pos IS NOT NULL
	  AND o.pos < coalesce(
	        (SELECT y.pos FROM outbox y
	         WHERE y.pos IS NOT NULL AND y.at >= clock_timestamp() - make_interval(secs => $1::bigint / 1e6)
	         ORDER BY y.pos LIMIT 1),
	        (SELECT max(pos) FROM outbox))
	  AND o.at < clock_timestamp() - make_interval(secs => $1::bigint / 1e6)
	  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.pos = o.pos AND d.next_at IS NOT NULL)
	ORDER BY o.pos
	LIMIT $2
	FOR UPDATE OF o SKIP LOCKED`

// qPurgeDelete deletes the events $1 that qPurgeTake locked, with their
// deliveries, unless a delivery of one is due after all: a replay that
// committed between qPurgeTake's reading and its lock, which this
// statement's later snapshot sees. The attempts go with their deliveries
// (ON DELETE CASCADE).
const qPurgeDelete = `WITH old AS (
		SELECT p AS pos FROM unnest($1::bigint[]) AS p
		WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.pos = p AND d.next_at IS NOT NULL)
	), deliveries AS (
		DELETE FROM webhook_deliveries d USING old WHERE d.pos = old.pos
	), events AS (
		DELETE FROM outbox o USING old WHERE o.pos = old.pos RETURNING 1
	)
	SELECT count(*) FROM events`

// PurgeOutbox deletes up to limit events older than retention: see
// webhook.DeliveryStore.
func (s *Store) PurgeOutbox(ctx context.Context, retention time.Duration, limit int) (int, error) {
	var n int
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		// The front walked in order, as a publish round walks its index:
		// a bitmap scan would read every old event and sort them, for
		// each batch of limit.
		if _, err := tx.ExecContext(ctx, qPublishPlan); err != nil {
			return mapErr(ctx, err)
		}
		var old []int64
		if err := tx.SelectContext(ctx, &old, qPurgeTake, retention.Microseconds(), limit); err != nil {
			return mapErr(ctx, err)
		}
		if len(old) == 0 {
			return nil
		}
		if err := tx.GetContext(ctx, &n, qPurgeDelete, pq.Array(old)); err != nil {
			return mapErr(ctx, err)
		}
		return nil
	})
	return n, err
}

// Publish publishes up to limit committed events: see webhook.DeliveryStore.
// While another publisher holds the lock it publishes nothing.
func (s *Store) Publish(ctx context.Context, limit int) (int, error) {
	var n int
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		n = 0
		var mine bool
		if err := tx.GetContext(ctx, &mine, qPublishLock, publishLock); err != nil {
			return mapErr(ctx, err)
		}
		if !mine {
			return nil
		}
		if _, err := tx.ExecContext(ctx, qPublishPlan); err != nil {
			return mapErr(ctx, err)
		}
		var batch []int64
		if err := tx.SelectContext(ctx, &batch, qPublishBatch, limit); err != nil {
			return mapErr(ctx, err)
		}
		if len(batch) == 0 {
			return nil
		}
		return mapErr(ctx, tx.GetContext(ctx, &n, qPublish, pq.Array(batch)))
	})
	return n, err
}

type changeRow struct {
	Pos      int64     `db:"pos"`
	ID       uuid.UUID `db:"id"`
	Type     string    `db:"type"`
	At       time.Time `db:"at"`
	Sequence int       `db:"sequence"`
	holdRow
}

func (r changeRow) change() (webhook.Event, error) {
	h, err := r.hold()
	if err != nil {
		return webhook.Event{}, err
	}
	return webhook.Event{ID: r.ID, Type: r.Type, CreatedAt: r.At.UTC(), Sequence: r.Sequence, Data: h, Pos: r.Pos}, nil
}

// Changes lists up to limit published events after position after, in
// position order.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]webhook.Event, error) {
	var rows []changeRow
	if err := s.db.SelectContext(ctx, &rows, qChanges, after, limit); err != nil {
		return nil, mapErr(ctx, err)
	}
	evs := make([]webhook.Event, 0, len(rows))
	for _, r := range rows {
		ev, err := r.change()
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

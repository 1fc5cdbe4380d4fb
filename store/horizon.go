package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// readHorizon gives the queue's stock readings their horizon: a time
// (the database's clock, microseconds) before which no booking a reading
// cannot see yet, because its transaction has not committed, was made.
// The next reading lists the places that booked from there, so a booking
// is not missed however long after its created_at its commit came.
//
// A booking's created_at is taken inside its transaction
// (hold_batch_events' clock_timestamp, or now() for plain SQL), so never
// before the transaction's start; the start of the oldest transaction in
// progress in the database, or the time of asking if none is, is a
// horizon for every reading taken after it was asked, since a transaction
// in progress then either was in progress when it was asked or began
// later. pg_stat_activity copies every backend's status to answer (about
// 0.3 ms with max_connections 500), so the answer is kept for
// horizonEvery and shared by every event's reading: a horizon up to that
// much older, a few more rows in each reading.
//
// A transaction left open (a psql session in BEGIN) holds the horizon
// back while it lasts, but QueueStock floors it at its window
// (queueTookWindow, or the pass TTL if shorter): each reading then costs
// what an instance's first one costs, and a place that went stops
// reserving once the window is past it. Only the transactions pg_stat_activity
// shows the service's role count (its own, or every role's with
// pg_read_all_stats); a booking another role made in a long transaction
// has only the store's margin (queueTookOverlap).
type readHorizon struct {
	mu    sync.Mutex
	at    time.Time // when value was read, by this process's clock
	value int64
}

const horizonEvery = 100 * time.Millisecond

const qHorizon = `SELECT (extract(epoch FROM least(statement_timestamp(), min(xact_start))) * 1000000)::bigint
	FROM pg_stat_activity
	WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`

// horizon is a horizon for a reading that starts after it returns.
func (h *readHorizon) horizon(ctx context.Context, db *sqlx.DB) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < horizonEvery {
		return h.value, nil
	}
	var v int64
	if err := db.GetContext(ctx, &v, qHorizon); err != nil {
		return 0, fmt.Errorf("store: the stock readings' horizon: %w", mapErr(ctx, err))
	}
	h.at, h.value = time.Now(), v
	return v, nil
}

package store

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/internal/pass"
)

const (
	// qPassKeys reads the keys that still verify, with how long until
	// each signs and retires by the database's clock, in the order they
	// start signing.
	qPassKeys = `SELECT kid, private_key,
		extract(epoch FROM signs_from - now())::float8 AS signs_in,
		extract(epoch FROM retired_at - now())::float8 AS retires_in
		FROM pass_keys WHERE retired_at IS NULL OR retired_at > now()
		ORDER BY signs_from, created_at`

	// qEnsurePassKey adds the first key. The unique index on the current
	// key makes every instance but one do nothing, however many start
	// together; none waits longer than the first one's insert.
	qEnsurePassKey = `INSERT INTO pass_keys (kid, public_key, private_key) VALUES ($1, $2, $3)
		ON CONFLICT ((true)) WHERE retired_at IS NULL DO NOTHING`

	// qRotateLock makes rotations take turns: a second one waits for the
	// first and then retires the key the first added.
	qRotateLock = `SELECT pg_advisory_xact_lock(7020315010)`
	// qRetirePassKeys retires the current key (and shortens the grace of
	// any key an earlier rotation left verifying longer) at $1 from now.
	qRetirePassKeys = `UPDATE pass_keys SET retired_at = now() + $1 * interval '1 microsecond'
		WHERE retired_at IS NULL OR retired_at > now() + $1 * interval '1 microsecond'`
	qAddPassKey = `INSERT INTO pass_keys (kid, public_key, private_key, signs_from)
		VALUES ($1, $2, $3, now() + $4 * interval '1 microsecond')`
	// qLongestPassTTL is the longest pass_ttl of an event, in seconds.
	qLongestPassTTL = `SELECT coalesce(max(queue_pass_ttl_seconds), 0) FROM events`
	// qForgetPassKeys deletes keys retired more than a day ago: nothing
	// verifies with them any more.
	qForgetPassKeys = `DELETE FROM pass_keys WHERE retired_at < now() - interval '1 day'`
)

// LongestPassTTL is the longest pass_ttl of any event with a waiting room
// (zero with none): how long a pass signed now may stay good.
func (s *Store) LongestPassTTL(ctx context.Context) (time.Duration, error) {
	var secs int64
	if err := s.db.GetContext(ctx, &secs, qLongestPassTTL); err != nil {
		return 0, mapErr(ctx, err)
	}
	return time.Duration(secs) * time.Second, nil
}

// PassKeys returns the keys that still verify, by the database's clock.
func (s *Store) PassKeys(ctx context.Context) ([]pass.StoredKey, error) {
	var rows []struct {
		ID        string   `db:"kid"`
		Seed      []byte   `db:"private_key"`
		SignsIn   float64  `db:"signs_in"`
		RetiresIn *float64 `db:"retires_in"`
	}
	if err := s.db.SelectContext(ctx, &rows, qPassKeys); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]pass.StoredKey, len(rows))
	for i, r := range rows {
		if len(r.Seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("store: pass key %q: seed of %d bytes", r.ID, len(r.Seed))
		}
		out[i] = pass.StoredKey{
			Key:     pass.Key{ID: r.ID, Private: ed25519.NewKeyFromSeed(r.Seed)},
			SignsIn: seconds(r.SignsIn),
		}
		if r.RetiresIn != nil {
			d := seconds(*r.RetiresIn)
			out[i].RetiresIn = &d
		}
	}
	return out, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// EnsurePassKey adds k, signing at once, unless a key no rotation has
// retired exists.
func (s *Store) EnsurePassKey(ctx context.Context, k pass.Key) error {
	_, err := s.db.ExecContext(ctx, qEnsurePassKey, k.ID, []byte(k.Public()), k.Private.Seed())
	return mapErr(ctx, err)
}

// RotatePassKey adds k, signing publish from now, and retires every other
// key publish + grace from now, in one transaction.
func (s *Store) RotatePassKey(ctx context.Context, k pass.Key, publish, grace time.Duration) error {
	return inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, qRotateLock); err != nil {
			return mapErr(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, qRetirePassKeys, (publish + grace).Microseconds()); err != nil {
			return mapErr(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, qAddPassKey, k.ID, []byte(k.Public()), k.Private.Seed(), publish.Microseconds()); err != nil {
			return mapErr(ctx, err)
		}
		_, err := tx.ExecContext(ctx, qForgetPassKeys)
		return mapErr(ctx, err)
	})
}

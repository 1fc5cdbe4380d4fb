package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/internal/idempotency"
)

const (
	qKeyLookup = `SELECT request_hash, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2`
	// qKeyClaim inserts a placeholder for a new key. A duplicate in flight
	// holds the key's index entry until it commits, so this waits for it
	// and then does nothing; the caller reads what the first one kept.
	qKeyClaim = `INSERT INTO idempotency_keys (scope, key, request_hash, status, body)
		VALUES ($1, $2, $3, 0, '') ON CONFLICT (scope, key) DO NOTHING`
	qKeyKeep   = `UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2`
	qKeyForget = `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2`
	// qKeyPurge deletes a batch of keys past their 24 hours.
	qKeyPurge = `DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM idempotency_keys WHERE created_at < now() - interval '24 hours' LIMIT $1))`
)

type keyRow struct {
	Hash   []byte `db:"request_hash"`
	Status int    `db:"status"`
	Body   []byte `db:"body"`
}

func (r keyRow) replay(key *idempotency.Key) (*idempotency.Response, error) {
	if !bytes.Equal(r.Hash, key.Hash) {
		return nil, idempotency.ErrMismatch
	}
	return &idempotency.Response{Status: r.Status, Body: r.Body}, nil
}

// Replay returns the response kept for key, nil if the key is new, or
// idempotency.ErrMismatch if it was used with other values.
func (s *Store) Replay(ctx context.Context, key *idempotency.Key) (*idempotency.Response, error) {
	var r keyRow
	err := s.db.GetContext(ctx, &r, qKeyLookup, key.Scope, key.Key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	return r.replay(key)
}

// claimKey reserves key inside tx. It returns nil when the key is new (the
// caller goes on and keeps its response with keepKey), or the response to
// replay, or idempotency.ErrMismatch.
func claimKey(ctx context.Context, tx *sqlx.Tx, key *idempotency.Key) (*idempotency.Response, error) {
	res, err := tx.ExecContext(ctx, qKeyClaim, key.Scope, key.Key, key.Hash)
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil, nil
	}
	var r keyRow
	if err := tx.GetContext(ctx, &r, qKeyLookup, key.Scope, key.Key); err != nil {
		return nil, mapErr(ctx, err)
	}
	return r.replay(key)
}

// keepKey stores resp for a key claimed in tx, or forgets the key when resp
// is not to be kept, so the client's retry runs afresh.
func keepKey(ctx context.Context, tx *sqlx.Tx, key *idempotency.Key, resp idempotency.Response) error {
	var err error
	if resp.Keep() {
		_, err = tx.ExecContext(ctx, qKeyKeep, key.Scope, key.Key, resp.Status, resp.Body)
	} else {
		_, err = tx.ExecContext(ctx, qKeyForget, key.Scope, key.Key)
	}
	return mapErr(ctx, err)
}

// PurgeKeys deletes idempotency keys older than 24 hours, in batches, and
// returns how many.
func (s *Store) PurgeKeys(ctx context.Context, batch int) (int, error) {
	total := 0
	for {
		res, err := s.db.ExecContext(ctx, qKeyPurge, batch)
		if err != nil {
			return total, mapErr(ctx, err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if int(n) < batch {
			return total, nil
		}
	}
}

package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/hold"

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
//
// A response is replayed only once the standby has what it was read from
// (see qSettle), on the same connection, so on the same server: the write
// it reports may have answered unavailable because its commit was not
// known to be replicated.
func (s *Store) Replay(ctx context.Context, key *idempotency.Key) (*idempotency.Response, error) {
	conn, err := s.once(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var r keyRow
	err = conn.GetContext(ctx, &r, qKeyLookup, key.Scope, key.Key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	res, err := r.replay(key)
	if err != nil {
		return nil, err
	}
	if err := settle(ctx, conn); err != nil {
		return nil, err
	}
	return res, nil
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

const (
	// qKeysClaim is qKeyClaim for a batch: it returns the keys it inserted.
	// It inserts the keys in one order, waiting at each one another
	// transaction has in flight: two transactions with keys in common in
	// the orders of their requests deadlocked (with lanes grouping keyed
	// batches, a hammer of two instances saw one a run); in one order,
	// they queue.
	qKeysClaim = `INSERT INTO idempotency_keys (scope, key, request_hash, status, body)
		SELECT u.scope, u.key, u.hash, 0, '' FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(scope, key, hash)
		ORDER BY u.scope, u.key
		ON CONFLICT (scope, key) DO NOTHING
		RETURNING scope, key`
	qKeysLookup = `SELECT k.scope, k.key, k.request_hash, k.status, k.body
		FROM idempotency_keys k JOIN unnest($1::text[], $2::text[]) AS u(scope, key) ON k.scope = u.scope AND k.key = u.key`
	qKeysKeep = `UPDATE idempotency_keys k SET status = u.status, body = u.body
		FROM unnest($1::text[], $2::text[], $3::int[], $4::bytea[]) AS u(scope, key, status, body)
		WHERE k.scope = u.scope AND k.key = u.key`
)

type scopedKey struct{ scope, key string }

// batchKeys records, for a batch, which request owns each key it claimed
// and which requests repeat a key an earlier request of the batch claimed.
type batchKeys struct {
	owner   map[scopedKey]int // key -> index of the request that claimed it
	repeats map[int]int       // request index -> index of the owner it repeats
}

// claimKeys claims the keys of a batch's requests in tx. A key used before
// sets its requests' Replay (or Err, on a mismatch); a key claimed by this
// batch makes its later requests repeats, answered after the first one's
// outcome is known.
//
// Every request is judged against the claim that stands, never against the
// batch's first request for the key: with key K in flight for values X, a
// batch of A (K, Y) then B (K, X) answers A idempotency_mismatch and B the
// replay of X's answer, since B is the honest retry. Only when this batch's
// first request made the claim are the others judged against it.
func claimKeys(ctx context.Context, tx *sqlx.Tx, reqs []hold.Request, outs []hold.Outcome) (batchKeys, error) {
	bk := batchKeys{owner: map[scopedKey]int{}, repeats: map[int]int{}}
	var scopes, keys []string
	var hashes [][]byte
	var later []int // requests whose key an earlier request of the batch carries
	for i, r := range reqs {
		if r.Key == nil {
			continue
		}
		sk := scopedKey{r.Key.Scope, r.Key.Key}
		if _, ok := bk.owner[sk]; ok {
			later = append(later, i)
			continue
		}
		bk.owner[sk] = i
		scopes, keys, hashes = append(scopes, sk.scope), append(keys, sk.key), append(hashes, r.Key.Hash)
	}
	if len(keys) == 0 {
		return bk, nil
	}
	var claimed []struct {
		Scope string `db:"scope"`
		Key   string `db:"key"`
	}
	if err := tx.SelectContext(ctx, &claimed, qKeysClaim, pq.Array(scopes), pq.Array(keys), pq.ByteaArray(hashes)); err != nil {
		return bk, mapErr(ctx, err)
	}
	stored := map[scopedKey]keyRow{} // keys another request claimed first
	if len(claimed) < len(keys) {
		mine := map[scopedKey]bool{}
		for _, c := range claimed {
			mine[scopedKey{c.Scope, c.Key}] = true
		}
		var taken []struct {
			Scope string `db:"scope"`
			Key   string `db:"key"`
			keyRow
		}
		if err := tx.SelectContext(ctx, &taken, qKeysLookup, pq.Array(scopes), pq.Array(keys)); err != nil {
			return bk, mapErr(ctx, err)
		}
		for _, t := range taken {
			sk := scopedKey{t.Scope, t.Key}
			if mine[sk] {
				continue
			}
			stored[sk] = t.keyRow
			i := bk.owner[sk]
			delete(bk.owner, sk)
			outs[i].Replay, outs[i].Err = t.keyRow.replay(reqs[i].Key)
		}
	}
	for _, i := range later {
		sk := scopedKey{reqs[i].Key.Scope, reqs[i].Key.Key}
		if row, ok := stored[sk]; ok {
			outs[i].Replay, outs[i].Err = row.replay(reqs[i].Key)
			continue
		}
		first := bk.owner[sk]
		if !bytes.Equal(reqs[first].Key.Hash, reqs[i].Key.Hash) {
			outs[i].Err = idempotency.ErrMismatch
			continue
		}
		bk.repeats[i] = first
	}
	return bk, nil
}

// keepKeys stores each claimed key's response, and answers the requests
// that repeated a key within the batch with their first request's outcome.
func keepKeys(ctx context.Context, tx *sqlx.Tx, reqs []hold.Request, bk batchKeys, outs []hold.Outcome, render hold.Render) error {
	for i, first := range bk.repeats {
		resp := render(outs[first].Hold, outs[first].Err)
		outs[i].Replay = &resp
	}
	if len(bk.owner) == 0 {
		return nil
	}
	var scopes, keys []string
	var statuses []int64
	var bodies [][]byte
	for sk, i := range bk.owner {
		resp := render(outs[i].Hold, outs[i].Err)
		if !resp.Keep() {
			if _, err := tx.ExecContext(ctx, qKeyForget, sk.scope, sk.key); err != nil {
				return mapErr(ctx, err)
			}
			continue
		}
		scopes, keys = append(scopes, sk.scope), append(keys, sk.key)
		statuses, bodies = append(statuses, int64(resp.Status)), append(bodies, resp.Body)
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, qKeysKeep, pq.Array(scopes), pq.Array(keys), pq.Array(statuses), pq.ByteaArray(bodies))
	return mapErr(ctx, err)
}

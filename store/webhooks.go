package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/webhook"
)

// Webhook endpoints and their deliveries (schema/014).
const (
	endpointColumns = `id, url, types, enabled, created_at, disabled_reason`

	qCreateEndpoint = `INSERT INTO webhook_endpoints (url, types) VALUES ($1, $2) RETURNING ` + endpointColumns
	qAddSecret      = `INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)`
	qEndpoints      = `SELECT ` + endpointColumns + ` FROM webhook_endpoints ORDER BY id`
	qLockEndpoint   = `SELECT ` + endpointColumns + ` FROM webhook_endpoints WHERE id = $1 FOR UPDATE`
	qEndpointExists = `SELECT true FROM webhook_endpoints WHERE id = $1`
	qDeleteEndpoint = `DELETE FROM webhook_endpoints WHERE id = $1 RETURNING ` + endpointColumns
	// qRetireSecrets gives every live secret of the endpoint $2 more
	// microseconds at most.
	qRetireSecrets = `UPDATE webhook_secrets SET expires_at = least(coalesce(expires_at, 'infinity'), clock_timestamp() + $2 * interval '1 microsecond')
		WHERE endpoint_id = $1`

	qAttempts = `SELECT a.delivery_id, o.id AS event_id, o.type, a.attempt, a.status_code, a.delivered, a.at, coalesce(a.error, '') AS error
		FROM webhook_attempts a
		JOIN webhook_deliveries d ON d.id = a.delivery_id
		JOIN outbox o ON o.pos = d.pos AND o.pos IS NOT NULL
		WHERE a.endpoint_id = $1
		ORDER BY a.id DESC LIMIT $2`

	qEnableEndpoint = `UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL WHERE id = $1`
	// qReplay makes a new delivery of delivery $2's event, its event
	// locked first so the purge cannot delete it meanwhile (qPurgeTake);
	// an event the purge holds is waited for, and once purged there is
	// nothing to replay.
	qReplay = `INSERT INTO webhook_deliveries (endpoint_id, pos)
		SELECT d.endpoint_id, d.pos FROM webhook_deliveries d
		WHERE d.id = $2 AND d.endpoint_id = $1
		  AND EXISTS (SELECT 1 FROM outbox o WHERE o.pos = d.pos FOR KEY SHARE)
		RETURNING id`

	// qClaim takes up to $1 due deliveries of enabled endpoints that no
	// other worker holds, at most $3 of any one endpoint and none of the
	// endpoints in $4 (those this worker has enough of in flight), oldest
	// due first, and makes them due again a lease ($2 microseconds) from
	// now: a worker that dies with one leaves it to the next. The cap per
	// endpoint keeps one slow receiver from taking every attempt of an
	// instance; each endpoint's due rows are read through its own index
	// range, never the whole backlog.
	qClaim = `WITH c AS (
			SELECT d.id FROM webhook_endpoints e
			CROSS JOIN LATERAL (
				SELECT d.id, d.next_at FROM webhook_deliveries d
				WHERE d.endpoint_id = e.id AND d.next_at <= clock_timestamp()
				ORDER BY d.next_at
				LIMIT $3
				FOR UPDATE SKIP LOCKED
			) d
			WHERE e.enabled AND e.id <> ALL ($4::bigint[])
			ORDER BY d.next_at
			LIMIT $1
		)
		UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_at = clock_timestamp() + $2 * interval '1 microsecond'
		FROM c, webhook_endpoints e, outbox o
		WHERE d.id = c.id AND e.id = d.endpoint_id AND o.pos = d.pos AND o.pos IS NOT NULL
		RETURNING d.id AS delivery_id, d.endpoint_id, e.url, d.attempts,
			ARRAY(SELECT s.secret FROM webhook_secrets s
				WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > clock_timestamp())
				ORDER BY s.created_at DESC) AS secrets,
			` + changeColumns

	// qLogAttempts logs a batch of attempts: $1 to $6 are their
	// deliveries, endpoints, attempt numbers, statuses (0: none),
	// whether each delivered, and errors. Only those whose deliveries are
	// still there: an endpoint deleted while an attempt was in flight
	// takes its deliveries with it, and the log's key to a delivery gone
	// failed the whole batch, other endpoints' answers with it. The
	// deliveries are locked (FOR KEY SHARE, as the key's check would) so
	// none goes between the look and the insert; one being deleted is
	// waited for and passed over.
	qLogAttempts = `INSERT INTO webhook_attempts (delivery_id, endpoint_id, attempt, status_code, delivered, error)
		SELECT d, e, a, nullif(s, 0), ok, nullif(err, '')
		FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::int[], $5::bool[], $6::text[]) AS t(d, e, a, s, ok, err)
		WHERE t.d IN (SELECT w.id FROM webhook_deliveries w WHERE w.id = ANY ($1::bigint[]) FOR KEY SHARE)`
	qDelivered = `UPDATE webhook_deliveries SET next_at = NULL, outcome = 'delivered' WHERE id = ANY ($1::bigint[]) AND outcome IS NULL`
	qDisable   = `UPDATE webhook_endpoints SET enabled = false,
		disabled_reason = 'the receiver answered 410 Gone at ' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
		WHERE id = $1`
	// qDisableDeliveries gives up every delivery still owed by endpoint
	// $1, and names them: each is a delivery given up, to be counted.
	qDisableDeliveries = `UPDATE webhook_deliveries SET next_at = NULL, outcome = 'disabled' WHERE endpoint_id = $1 AND outcome IS NULL
		RETURNING id`
	// qRetry makes each delivery $1 due again after $3 microseconds
	// doubled for every attempt made but the first (up to a tenth less,
	// never more: the first retry comes within the base), but never later
	// than $4 microseconds after it was made: the last retry is made at
	// that deadline, not given up for a delay that would pass it. An
	// attempt that fails at or after the deadline fails the delivery.
	// Only while that worker's claim ($2, the attempt) is still the
	// latest.
	qRetry = `WITH r AS (
			SELECT * FROM unnest($1::bigint[], $2::int[]) AS r(id, attempt)
		), due AS (
			SELECT d.id, d.created_at + $4 * interval '1 microsecond' AS deadline,
				clock_timestamp() + $3 * interval '1 microsecond' * power(2, least(d.attempts - 1, 30)) * (0.9 + random() * 0.1) AS at
			FROM webhook_deliveries d JOIN r ON r.id = d.id AND r.attempt = d.attempts
			WHERE d.outcome IS NULL
		)
		UPDATE webhook_deliveries d SET
			next_at = CASE WHEN clock_timestamp() >= due.deadline THEN NULL ELSE least(due.at, due.deadline) END,
			outcome = CASE WHEN clock_timestamp() >= due.deadline THEN 'failed' END
		FROM due WHERE d.id = due.id
		RETURNING d.id, coalesce(d.outcome, 'retry')`
	qRelease = `UPDATE webhook_deliveries SET next_at = clock_timestamp(), attempts = attempts - 1
		WHERE id = $1 AND attempts = $2 AND outcome IS NULL`
)

type endpointRow struct {
	ID             int64          `db:"id"`
	URL            string         `db:"url"`
	Types          pq.StringArray `db:"types"`
	Enabled        bool           `db:"enabled"`
	CreatedAt      time.Time      `db:"created_at"`
	DisabledReason sql.NullString `db:"disabled_reason"`
}

func (r endpointRow) endpoint() webhook.Endpoint {
	e := webhook.Endpoint{ID: r.ID, URL: r.URL, Types: []string(r.Types), Enabled: r.Enabled, CreatedAt: r.CreatedAt.UTC()}
	if e.Types == nil {
		e.Types = []string{}
	}
	if r.DisabledReason.Valid {
		e.DisabledReason = &r.DisabledReason.String
	}
	return e
}

// CreateEndpoint registers an endpoint with its first secret.
func (s *Store) CreateEndpoint(ctx context.Context, url string, types []string, secret string) (webhook.Endpoint, error) {
	var e webhook.Endpoint
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, qBetweenRounds, publishLock); err != nil {
			return mapErr(ctx, err)
		}
		var r endpointRow
		if err := tx.GetContext(ctx, &r, qCreateEndpoint, url, pq.StringArray(types)); err != nil {
			return mapErr(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, qAddSecret, r.ID, secret); err != nil {
			return mapErr(ctx, err)
		}
		e = r.endpoint()
		e.Secret = secret
		return nil
	})
	return e, err
}

// Endpoints lists every endpoint, without secrets.
func (s *Store) Endpoints(ctx context.Context) ([]webhook.Endpoint, error) {
	var rows []endpointRow
	if err := s.db.SelectContext(ctx, &rows, qEndpoints); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]webhook.Endpoint, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.endpoint())
	}
	return out, nil
}

// DeleteEndpoint removes an endpoint, its secrets and its deliveries, and
// returns it.
func (s *Store) DeleteEndpoint(ctx context.Context, id int64) (webhook.Endpoint, error) {
	var r endpointRow
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, qBetweenRounds, publishLock); err != nil {
			return mapErr(ctx, err)
		}
		err := tx.GetContext(ctx, &r, qDeleteEndpoint, id)
		if errors.Is(err, sql.ErrNoRows) {
			return webhook.ErrNotFound
		}
		return mapErr(ctx, err)
	})
	if err != nil {
		return webhook.Endpoint{}, err
	}
	return r.endpoint(), nil
}

// RotateSecret makes secret the endpoint's current one and leaves the
// others live for grace at most.
func (s *Store) RotateSecret(ctx context.Context, id int64, secret string, grace time.Duration) (webhook.Endpoint, error) {
	var e webhook.Endpoint
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var r endpointRow
		if err := tx.GetContext(ctx, &r, qLockEndpoint, id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return webhook.ErrNotFound
			}
			return mapErr(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, qRetireSecrets, id, grace.Microseconds()); err != nil {
			return mapErr(ctx, err)
		}
		if _, err := tx.ExecContext(ctx, qAddSecret, id, secret); err != nil {
			return mapErr(ctx, err)
		}
		e = r.endpoint()
		e.Secret = secret
		return nil
	})
	return e, err
}

func (s *Store) endpointExists(ctx context.Context, q sqlx.QueryerContext, id int64) error {
	var ok bool
	err := sqlx.GetContext(ctx, q, &ok, qEndpointExists, id)
	if errors.Is(err, sql.ErrNoRows) {
		return webhook.ErrNotFound
	}
	return mapErr(ctx, err)
}

// Attempts is an endpoint's delivery log, newest first.
func (s *Store) Attempts(ctx context.Context, endpointID int64, limit int) ([]webhook.Attempt, error) {
	if err := s.endpointExists(ctx, s.db, endpointID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, qAttempts, endpointID, limit)
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	defer rows.Close()
	out := []webhook.Attempt{}
	for rows.Next() {
		var a webhook.Attempt
		var status sql.NullInt64
		if err := rows.Scan(&a.DeliveryID, &a.EventID, &a.Type, &a.Attempt, &status, &a.Delivered, &a.At, &a.Error); err != nil {
			return nil, mapErr(ctx, err)
		}
		if status.Valid {
			code := int(status.Int64)
			a.StatusCode = &code
		}
		a.At = a.At.UTC()
		out = append(out, a)
	}
	return out, mapErr(ctx, rows.Err())
}

// ReplayDelivery makes a new delivery, due now, of a delivery's event to
// its endpoint, and turns the endpoint on again.
func (s *Store) ReplayDelivery(ctx context.Context, endpointID, deliveryID int64) (int64, error) {
	var id int64
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, qBetweenRounds, publishLock); err != nil {
			return mapErr(ctx, err)
		}
		res, err := tx.ExecContext(ctx, qEnableEndpoint, endpointID)
		if err != nil {
			return mapErr(ctx, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return webhook.ErrNotFound
		}
		err = tx.GetContext(ctx, &id, qReplay, endpointID, deliveryID)
		if errors.Is(err, sql.ErrNoRows) {
			return webhook.ErrDeliveryNotFound
		}
		return mapErr(ctx, err)
	})
	return id, err
}

type claimRow struct {
	DeliveryID int64          `db:"delivery_id"`
	EndpointID int64          `db:"endpoint_id"`
	URL        string         `db:"url"`
	Attempts   int            `db:"attempts"`
	Secrets    pq.StringArray `db:"secrets"`
	changeRow
}

// ClaimDeliveries takes up to limit due deliveries, at most perEndpoint of
// one endpoint and none of skip's; see webhook.DeliveryStore.
func (s *Store) ClaimDeliveries(ctx context.Context, limit, perEndpoint int, skip []int64, lease time.Duration) ([]webhook.Claim, error) {
	var rows []claimRow
	if skip == nil {
		skip = []int64{}
	}
	if err := s.db.SelectContext(ctx, &rows, qClaim, limit, lease.Microseconds(), perEndpoint, pq.Array(skip)); err != nil {
		return nil, mapErr(ctx, err)
	}
	out := make([]webhook.Claim, 0, len(rows))
	for _, r := range rows {
		ev, err := r.change()
		if err != nil {
			return nil, err
		}
		out = append(out, webhook.Claim{DeliveryID: r.DeliveryID, EndpointID: r.EndpointID, URL: r.URL,
			Secrets: []string(r.Secrets), Attempt: r.Attempts, Event: ev})
	}
	return out, nil
}

// RecordAttempts logs a batch of attempts and moves their deliveries on,
// in one transaction; see webhook.DeliveryStore.
func (s *Store) RecordAttempts(ctx context.Context, rs []webhook.Result, retryBase, retryFor time.Duration) (map[int64]string, error) {
	var outcomes map[int64]string
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		outcomes = make(map[int64]string, len(rs))
		var (
			dels, eps, atts, codes []int64
			oks                    []bool
			errs                   []string
			delivered              []int64
			retryIDs, retryAtts    []int64
			gone                   []int64
		)
		for _, r := range rs {
			dels, eps, atts, codes = append(dels, r.DeliveryID), append(eps, r.EndpointID), append(atts, int64(r.Attempt)), append(codes, int64(r.StatusCode))
			oks, errs = append(oks, r.Delivered), append(errs, r.Err)
			switch {
			case r.Delivered:
				delivered = append(delivered, r.DeliveryID)
				outcomes[r.DeliveryID] = webhook.OutcomeDelivered
			case r.StatusCode == 410:
				if !slices.Contains(gone, r.EndpointID) {
					gone = append(gone, r.EndpointID)
				}
				outcomes[r.DeliveryID] = webhook.OutcomeDisabled
			default:
				retryIDs, retryAtts = append(retryIDs, r.DeliveryID), append(retryAtts, int64(r.Attempt))
				// Claimed again meanwhile (this claim's lease ran out), or
				// over, unless the update below says otherwise: the latest
				// claim decides.
				outcomes[r.DeliveryID] = webhook.OutcomeRetry
			}
		}
		if len(gone) > 0 {
			// Turning endpoints off, before anything else is locked.
			if _, err := tx.ExecContext(ctx, qBetweenRounds, publishLock); err != nil {
				return mapErr(ctx, err)
			}
		}
		if _, err := tx.ExecContext(ctx, qLogAttempts, pq.Array(dels), pq.Array(eps), pq.Array(atts), pq.Array(codes),
			pq.Array(oks), pq.Array(errs)); err != nil {
			return mapErr(ctx, err)
		}
		if len(delivered) > 0 {
			if _, err := tx.ExecContext(ctx, qDelivered, pq.Array(delivered)); err != nil {
				return mapErr(ctx, err)
			}
		}
		slices.Sort(gone)
		for _, ep := range gone {
			if _, err := tx.ExecContext(ctx, qDisable, ep); err != nil {
				return mapErr(ctx, err)
			}
			var ids []int64
			if err := tx.SelectContext(ctx, &ids, qDisableDeliveries, ep); err != nil {
				return mapErr(ctx, err)
			}
			// The endpoint's other deliveries, in this batch or not, are
			// given up with it.
			for _, id := range ids {
				outcomes[id] = webhook.OutcomeDisabled
			}
		}
		if len(retryIDs) == 0 {
			return nil
		}
		rows, err := tx.QueryContext(ctx, qRetry, pq.Array(retryIDs), pq.Array(retryAtts), retryBase.Microseconds(), retryFor.Microseconds())
		if err != nil {
			return mapErr(ctx, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var outcome string
			if err := rows.Scan(&id, &outcome); err != nil {
				return mapErr(ctx, err)
			}
			outcomes[id] = outcome
		}
		return mapErr(ctx, rows.Err())
	})
	return outcomes, err
}

// ReleaseClaim makes a claimed delivery due now, unattempted.
func (s *Store) ReleaseClaim(ctx context.Context, deliveryID int64, attempt int) error {
	_, err := s.db.ExecContext(ctx, qRelease, deliveryID, attempt)
	return mapErr(ctx, err)
}

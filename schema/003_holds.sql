-- Holds. A hold is a bookings row in 'pending' with an expiry: its tickets
-- left the stock when it was inserted, and come back (through the stock
-- trigger) when it turns 'failed', released by its buyer or expired.

ALTER TABLE bookings
    -- The hold's public id: random, so knowing one is the capability to
    -- confirm or release it. The serial id stays internal.
    ADD COLUMN hold_id uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN confirmed_at timestamptz,
    -- Why a booking failed: released by its buyer, or expired.
    ADD COLUMN failure_reason text,
    ADD CONSTRAINT bookings_hold_id_key UNIQUE (hold_id),
    ADD CONSTRAINT bookings_failure_reason_known CHECK (failure_reason IN ('released', 'expired')),
    ADD CONSTRAINT bookings_failure_reason_when_failed CHECK (failure_reason IS NULL OR booking_status = 'failed');

-- The sweeper and the in-transaction expiry look for lapsed pending holds,
-- overall and per event; only pending rows are indexed, so the index stays
-- as small as the number of live holds.
CREATE INDEX bookings_pending_expiry ON bookings (expires_at) WHERE booking_status = 'pending';
CREATE INDEX bookings_event_pending_expiry ON bookings (event_id, expires_at) WHERE booking_status = 'pending';

-- Idempotency keys: the first response to a request with an
-- Idempotency-Key, kept with a hash of its values and written in the same
-- transaction as its effect. A duplicate in flight blocks on the primary
-- key until the first commits, then replays what it stored.
CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status integer NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

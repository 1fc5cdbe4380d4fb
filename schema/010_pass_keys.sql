-- The waiting room's passes (internal/pass).
--
-- pass_keys holds the Ed25519 keys that sign and verify passes, shared by
-- every instance. At most one key is current (no rotation has retired it):
-- the unique index below makes the first instance's INSERT ... ON CONFLICT
-- the only one that lands when several start together. A rotation, in one
-- transaction, adds a key that signs from signs_from (set a little in the
-- future, so every instance and edge proxy has read it by then) and gives
-- every other key a retired_at: they keep verifying until then, and the
-- newest key whose signs_from has passed signs.
--
-- The private key is kept as its 32-byte seed. Whoever can read this table
-- can make passes: it is as secret as the database's password.
CREATE TABLE pass_keys (
    kid         text PRIMARY KEY,
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    private_key bytea NOT NULL CHECK (octet_length(private_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    signs_from  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE UNIQUE INDEX pass_keys_one_current ON pass_keys ((true)) WHERE retired_at IS NULL;

-- A pass is used once its place has a confirmed booking: the grant looks
-- that up by event and place, under the event's row lock. Partial, so the
-- bookings made without a pass (all of them on an event without a queue)
-- cost it nothing; a query must say queue_place IS NOT NULL to use it.
CREATE INDEX IF NOT EXISTS bookings_event_queue_place ON bookings (event_id, queue_place) WHERE queue_place IS NOT NULL;

-- hold_batch gains the waiting room's checks in 011, which defines it once
-- with every check of this round.

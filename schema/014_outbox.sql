-- The transactional outbox: every change of a hold writes its event in the
-- same transaction as the change, by triggers on bookings, so an event
-- exists if and only if its change committed, whatever code path made it
-- (hold_batch's insert and its expiry of lapsed holds, confirm, release,
-- extend, cancel, the sweeper, /book/safe, plain SQL).
--
-- The event of a change (a booking row's move):
--   inserted pending                          hold.created
--   inserted confirmed                        hold.confirmed
--   pending -> pending, expires_at later      hold.extended
--   pending -> confirmed                      hold.confirmed
--   pending -> failed (released, expired)     hold.released, hold.expired
--   confirmed -> failed (cancelled)           hold.cancelled
-- Any other update (an expiry moved earlier, updated_at) is no change of
-- the hold and writes nothing.
--
-- The outbox keeps a snapshot of the booking's columns as the change left
-- them; the service renders the event's Hold from it with the one Hold
-- view of its store, the items read from booking_items (which never
-- change) by booking id.
--
-- Feed positions. A row's n is taken when its transaction writes it, not
-- when it commits: transactions that commit out of the order they wrote
-- leave n's that a reader reading "after n" would skip (watermill's SQL
-- outbox, issues #311 and #576). So n is only the write order; the feed's
-- order is pos, given by one publisher at a time (an advisory lock) to
-- the rows it sees committed, in n order, in one transaction per round.
-- A round starts only after the last one committed, so positions become
-- visible in order, without holes: a reader after pos p can never later
-- find a committed row below p it did not see.

-- sequence: how many changes of the hold this row has been through,
-- counting its insert as the first. A BEFORE trigger bumps it on every
-- change that writes an event (the same conditions as outbox_on_update);
-- its WHEN is evaluated by PostgreSQL itself, so other updates cost
-- nothing.
ALTER TABLE bookings ADD COLUMN change_seq integer NOT NULL DEFAULT 1;

CREATE FUNCTION bookings_count_change()
RETURNS TRIGGER AS $$
BEGIN
    NEW.change_seq := OLD.change_seq + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_count_change
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (OLD.booking_status IS DISTINCT FROM NEW.booking_status
                   OR (OLD.booking_status = 'pending' AND NEW.booking_status = 'pending'
                       AND NEW.expires_at > OLD.expires_at))
EXECUTE FUNCTION bookings_count_change();

CREATE SEQUENCE outbox_n;

CREATE TABLE outbox (
    -- The write order; see above.
    n bigint NOT NULL DEFAULT nextval('outbox_n'),
    -- The feed position, NULL until published.
    pos bigint,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    type text NOT NULL,
    sequence integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The booking as the change left it.
    booking_id integer NOT NULL,
    hold_id uuid NOT NULL,
    event_id integer NOT NULL,
    user_email text NOT NULL,
    quantity integer NOT NULL,
    total_amount numeric(10,2) NOT NULL,
    status text NOT NULL,
    expires_at timestamptz,
    hold_created_at timestamptz,
    confirmed_at timestamptz
);
ALTER SEQUENCE outbox_n OWNED BY outbox.n;

-- The publisher's work list: as small as the rows not yet published, the
-- one index a hold's write pays for.
CREATE INDEX outbox_unpublished ON outbox (n) WHERE pos IS NULL;
CREATE UNIQUE INDEX outbox_pos ON outbox (pos) WHERE pos IS NOT NULL;

-- An event, once written, is what happened: only its position is given,
-- once. (TRUNCATE stays an operator's tool.)
CREATE TRIGGER outbox_is_final
BEFORE UPDATE ON outbox
FOR EACH ROW WHEN (OLD.pos IS NOT NULL OR NEW.pos IS NULL
                   OR (OLD.n, OLD.id, OLD.type, OLD.sequence, OLD.at, OLD.booking_id, OLD.status)
                      IS DISTINCT FROM (NEW.n, NEW.id, NEW.type, NEW.sequence, NEW.at, NEW.booking_id, NEW.status))
EXECUTE FUNCTION bookings_refuse('an outbox event never changes but for its position, given once', 'HF001');

CREATE FUNCTION outbox_on_insert()
RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO outbox (type, sequence, booking_id, hold_id, event_id, user_email, quantity, total_amount,
                        status, expires_at, hold_created_at, confirmed_at)
    SELECT CASE WHEN b.booking_status = 'confirmed' THEN 'hold.confirmed' ELSE 'hold.created' END,
           b.change_seq, b.id, b.hold_id, b.event_id, b.user_email, b.quantity, b.total_amount,
           b.booking_status, b.expires_at, b.created_at, b.confirmed_at
    FROM new_bookings b
    ORDER BY b.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION outbox_on_update()
RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO outbox (type, sequence, booking_id, hold_id, event_id, user_email, quantity, total_amount,
                        status, expires_at, hold_created_at, confirmed_at)
    SELECT c.type, n.change_seq, n.id, n.hold_id, n.event_id, n.user_email, n.quantity, n.total_amount,
           c.status, n.expires_at, n.created_at, n.confirmed_at
    FROM old_bookings o
    JOIN new_bookings n ON n.id = o.id
    CROSS JOIN LATERAL (SELECT CASE
            WHEN o.booking_status = 'pending' AND n.booking_status = 'confirmed' THEN 'confirmed'
            WHEN o.booking_status IN ('pending', 'confirmed') AND n.booking_status = 'failed'
                THEN coalesce(n.failure_reason, 'released')
            WHEN o.booking_status = 'pending' AND n.booking_status = 'pending' AND n.expires_at > o.expires_at
                THEN 'extended'
        END AS what) w
    CROSS JOIN LATERAL (SELECT 'hold.' || w.what AS type,
            CASE WHEN w.what = 'extended' THEN 'pending' ELSE w.what END AS status) c
    WHERE w.what IS NOT NULL
    ORDER BY n.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER outbox_insert
AFTER INSERT ON bookings
REFERENCING NEW TABLE AS new_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION outbox_on_insert();

CREATE TRIGGER outbox_update
AFTER UPDATE ON bookings
REFERENCING OLD TABLE AS old_bookings NEW TABLE AS new_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION outbox_on_update();

-- Webhook endpoints. types empty: every type.
CREATE TABLE webhook_endpoints (
    id bigserial PRIMARY KEY,
    url text NOT NULL,
    types text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    -- Why it was turned off (a 410 from the receiver), NULL while enabled.
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- An endpoint's signing secrets: the current one (expires_at NULL) and,
-- while a secret rotates, the previous ones until they expire. Every
-- delivery is signed with each live secret (one v1 per secret).
CREATE TABLE webhook_secrets (
    endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz
);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id);

-- One event to one endpoint, until delivered or given up. next_at is when
-- it is due: a delivery worker claims a due row (SKIP LOCKED) by moving
-- next_at a lease ahead, so a worker killed mid-send leaves it due again
-- once the lease is over; it is NULL once the delivery is over (outcome
-- delivered, failed or disabled).
CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    pos bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_at timestamptz DEFAULT clock_timestamp(),
    outcome text CHECK (outcome IN ('delivered', 'failed', 'disabled')),
    CHECK ((next_at IS NULL) = (outcome IS NOT NULL))
);
-- A claim reads each endpoint's due deliveries, oldest first, a few at a
-- time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_at) WHERE next_at IS NOT NULL;

-- The delivery log: one row per attempt, what the receiver answered.
CREATE TABLE webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id bigint NOT NULL,
    attempt integer NOT NULL,
    -- NULL: no answer (refused, timed out).
    status_code integer,
    delivered boolean NOT NULL,
    error text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

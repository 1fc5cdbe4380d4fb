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

-- hold_batch as in 006, with this round's checks.
--
-- The two caps (007): each request also brings its buyer key
-- (p_keys[i]) and its client address (p_clients[i], NULL when unknown), and
-- p_client_cap is the most pending tickets of the event one address may hold
-- (0: no cap). A request over the address's cap is answered
-- client_limit_exceeded. Everything 006 says of its plans and its order of
-- work still holds. The old signature goes: an instance of the previous
-- version still running during an upgrade fails its batches without keys
-- until it is replaced.
--
-- The sale window of 009 and the waiting room's checks, every line marked
-- "010:":
--   * the sale window, read with the event row it locks and by the
--     database's clock, so an admin's change of the window cannot pass
--     between the check and the grant: outside it every request of the
--     batch is answered not_on_sale or sale_closed and nothing is granted;
--   * the parameter p_places (one place per request, '' for none; last and
--     DEFAULT NULL, so callers that pass none still resolve to it), hence
--     the DROP: a new argument list would otherwise add a second function;
--   * v_queued, read with the event row it already locks;
--   * in the loop, before any stock or cap check: a queued event refuses a
--     request without a good pass (queue_required; the service says why)
--     and one whose place already has a confirmed booking (pass_used);
--   * the insert records the place in queue_place.
-- Outcomes gain not_on_sale, sale_closed, queue_required and pass_used.
DROP FUNCTION hold_batch(bigint, text[], int[], bigint, int);

CREATE FUNCTION hold_batch(p_event bigint, p_emails text[], p_keys text[], p_clients inet[], p_quantities int[],
                           p_ttl_us bigint, p_cap int, p_client_cap int,
                           p_places text[] DEFAULT NULL) -- 010: p_places
RETURNS TABLE (n int, outcome text, price numeric, expired int,
               hold_id uuid, event_id int, user_email varchar, quantity int, total_amount numeric,
               expires_at timestamptz, created_at timestamptz, confirmed_at timestamptz, status text)
AS $$
#variable_conflict use_column
DECLARE
    v_available int;
    v_price numeric;
    v_expired int := 0;
    v_tried_lapsed boolean := false;
    v_count int := coalesce(array_length(p_emails, 1), 0);
    v_outcomes text[] := array_fill(NULL::text, ARRAY[v_count]);
    v_ids uuid[] := array_fill(NULL::uuid, ARRAY[v_count]);
    v_granted int[] := '{}';
    v_taken int := 0;
    v_keys text[];     -- each buyer's key, once
    v_owned int[];     -- what v_keys[k] owns of the event, this batch included
    v_clients inet[];  -- each known client address, once
    v_held int[];      -- what v_clients[k] holds pending, this batch included
    v_pos int;
    v_cpos int;
    v_gone_keys text[];     -- buyers of the batch whose lapsed holds it expired
    v_gone_tickets int[];   -- and the tickets those holds had
    v_gone_clients inet[];  -- the same by client address
    v_gone_held int[];
    v_gone int;
    v_q int;
    v_queued boolean;  -- 010: the event has a waiting room
    v_place text;      -- 010: this request's admitted place, if any
    v_sale text;       -- 010: the sale window's verdict, NULL while on sale
    v_now timestamptz; -- 010: when the holds are made, by the database's clock
BEGIN
    IF array_length(p_quantities, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_keys, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_clients, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % keys, % clients, % quantities', v_count,
            array_length(p_keys, 1), array_length(p_clients, 1), array_length(p_quantities, 1);
    END IF;
    -- 010: one place per request, or none at all (NULL: a caller that
    -- knows nothing of passes).
    IF p_places IS NOT NULL AND array_length(p_places, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % places', v_count, array_length(p_places, 1);
    END IF;
    -- The service validates quantities; a bad one here would have a
    -- batch's other requests granted from a stock it distorted.
    IF EXISTS (SELECT 1 FROM unnest(p_quantities) AS q WHERE q IS NULL OR q < 1) THEN
        RAISE EXCEPTION 'hold_batch: quantities must be positive' USING ERRCODE = '22023';
    END IF;
    IF p_cap > 0 AND EXISTS (SELECT 1 FROM unnest(p_keys) AS k WHERE k IS NULL) THEN
        RAISE EXCEPTION 'hold_batch: every request needs a buyer key' USING ERRCODE = '22023';
    END IF;

    SELECT e.available_tickets, e.ticket_price,
           e.queue_admit_per_second IS NOT NULL, -- 010: v_queued
           sale_window(e.on_sale_at, e.off_sale_at) -- 010: v_sale
    INTO v_available, v_price, v_queued, v_sale
    FROM events e WHERE e.id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT i::int, 'not_found', NULL::numeric, 0,
            NULL::uuid, NULL::int, NULL::varchar, NULL::int, NULL::numeric,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text
        FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;
    -- 010: outside the sale window nothing is granted.
    IF v_sale IS NOT NULL THEN
        RETURN QUERY SELECT i::int, v_sale, NULL::numeric, 0,
            NULL::uuid, NULL::int, NULL::varchar, NULL::int, NULL::numeric,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text
        FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;

    IF p_cap > 0 THEN
        -- A pending hold counts even once it has lapsed, until it is
        -- failed: a confirm already in flight may still take it.
        SELECT array_agg(d.k), array_agg(d.tickets) INTO v_keys, v_owned
        FROM (
            SELECT u.k, coalesce((
                SELECT sum(b.quantity) FROM bookings b
                WHERE b.event_id = p_event AND b.buyer_key = u.k
                  AND b.booking_status IN ('pending', 'confirmed')), 0)::int AS tickets
            FROM (SELECT DISTINCT k FROM unnest(p_keys) AS k) u
        ) d;
    END IF;
    IF p_client_cap > 0 THEN
        -- Holds at once: pending tickets only, lapsed ones included as above.
        SELECT array_agg(d.c), array_agg(d.tickets) INTO v_clients, v_held
        FROM (
            SELECT u.c, coalesce((
                SELECT sum(b.quantity) FROM bookings b
                WHERE b.event_id = p_event AND b.client_addr = u.c
                  AND b.booking_status = 'pending'), 0)::int AS tickets
            FROM (SELECT DISTINCT c FROM unnest(p_clients) AS c WHERE c IS NOT NULL) u
        ) d;
    END IF;

    FOR i IN 1 .. v_count LOOP
        v_q := p_quantities[i];
        -- 010: the waiting room, before the stock and the caps: a refused
        -- request takes nothing and expires nothing.
        IF v_queued THEN
            v_place := nullif(p_places[i], '');
            IF v_place IS NULL THEN
                v_outcomes[i] := 'queue_required';
                CONTINUE;
            END IF;
            IF EXISTS (SELECT 1 FROM bookings b
                       WHERE b.event_id = p_event AND b.queue_place = v_place AND b.queue_place IS NOT NULL
                         AND b.booking_status = 'confirmed') THEN
                v_outcomes[i] := 'pass_used';
                CONTINUE;
            END IF;
        END IF;
        v_pos := NULL;
        v_cpos := NULL;
        IF p_cap > 0 THEN
            v_pos := array_position(v_keys, p_keys[i]);
        END IF;
        IF p_client_cap > 0 AND p_clients[i] IS NOT NULL THEN
            v_cpos := array_position(v_clients, p_clients[i]);
        END IF;
        IF NOT v_tried_lapsed AND (v_available < v_q
                OR (v_pos IS NOT NULL AND v_owned[v_pos] + v_q > p_cap)
                OR (v_cpos IS NOT NULL AND v_held[v_cpos] + v_q > p_client_cap)) THEN
            -- Short of stock, or over a cap: give lapsed holds back first,
            -- so nobody is told sold out or limit_exceeded only because the
            -- sweeper has not run yet. Rows another transaction holds (a
            -- sweeper, a confirm) are skipped, and still count.
            v_tried_lapsed := true;
            WITH x AS (
                UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = now()
                WHERE id IN (
                    SELECT b.id FROM bookings b
                    WHERE b.event_id = p_event AND b.booking_status = 'pending' AND b.expires_at <= now()
                    FOR UPDATE SKIP LOCKED)
                RETURNING bookings.buyer_key, bookings.client_addr, bookings.quantity
            ), g AS (
                SELECT x.buyer_key, sum(x.quantity)::int AS tickets, count(*)::int AS holds FROM x GROUP BY x.buyer_key
            ), c AS (
                SELECT x.client_addr, sum(x.quantity)::int AS tickets FROM x
                WHERE x.client_addr = ANY (v_clients) GROUP BY x.client_addr
            )
            SELECT (SELECT coalesce(sum(g.holds), 0)::int FROM g),
                   (SELECT array_agg(g.buyer_key) FROM g WHERE g.buyer_key = ANY (v_keys)),
                   (SELECT array_agg(g.tickets) FROM g WHERE g.buyer_key = ANY (v_keys)),
                   (SELECT array_agg(c.client_addr) FROM c),
                   (SELECT array_agg(c.tickets) FROM c)
            INTO v_expired, v_gone_keys, v_gone_tickets, v_gone_clients, v_gone_held;
            IF v_expired > 0 THEN
                -- The stock trigger gave their tickets back; this batch's
                -- grants are not inserted yet, so take them off again.
                SELECT e.available_tickets - v_taken INTO v_available FROM events e WHERE e.id = p_event;
                -- Nor do the expired holds count against their buyers and
                -- addresses.
                FOR k IN 1 .. coalesce(array_length(v_gone_keys, 1), 0) LOOP
                    v_gone := array_position(v_keys, v_gone_keys[k]);
                    v_owned[v_gone] := v_owned[v_gone] - v_gone_tickets[k];
                END LOOP;
                FOR k IN 1 .. coalesce(array_length(v_gone_clients, 1), 0) LOOP
                    v_gone := array_position(v_clients, v_gone_clients[k]);
                    v_held[v_gone] := v_held[v_gone] - v_gone_held[k];
                END LOOP;
            END IF;
        END IF;
        IF v_available < v_q THEN
            v_outcomes[i] := 'sold_out';
            CONTINUE;
        END IF;
        IF v_price * v_q > 99999999.99 THEN
            v_outcomes[i] := 'too_large';
            CONTINUE;
        END IF;
        IF v_pos IS NOT NULL AND v_owned[v_pos] + v_q > p_cap THEN
            v_outcomes[i] := 'limit_exceeded';
            CONTINUE;
        END IF;
        IF v_cpos IS NOT NULL AND v_held[v_cpos] + v_q > p_client_cap THEN
            v_outcomes[i] := 'client_limit_exceeded';
            CONTINUE;
        END IF;
        IF v_pos IS NOT NULL THEN
            v_owned[v_pos] := v_owned[v_pos] + v_q;
        END IF;
        IF v_cpos IS NOT NULL THEN
            v_held[v_cpos] := v_held[v_cpos] + v_q;
        END IF;
        v_available := v_available - v_q;
        v_taken := v_taken + v_q;
        v_outcomes[i] := 'held';
        v_ids[i] := gen_random_uuid();
        v_granted := v_granted || i;
    END LOOP;

    -- 010: a hold lasts exactly its TTL from when it is made: the
    -- transaction a keyed batch or /book/safe runs this in began earlier
    -- (created_at's default), and each row's clock_timestamp() differs.
    v_now := clock_timestamp();

    -- One insert for the whole batch: the statement-level stock trigger
    -- takes all its tickets in one update of the event row.
    RETURN QUERY
    WITH ins AS (
        INSERT INTO bookings (hold_id, event_id, user_email, buyer_key, client_addr, quantity, total_amount,
                              booking_status, created_at, expires_at, queue_place) -- 010
        SELECT v_ids[g.i], p_event, p_emails[g.i], p_keys[g.i], p_clients[g.i], p_quantities[g.i],
               v_price * p_quantities[g.i], 'pending', v_now, v_now + p_ttl_us * interval '1 microsecond',
               nullif(p_places[g.i], '') -- 010: the pass's place
        FROM unnest(v_granted) WITH ORDINALITY AS g(i, k)
        ORDER BY g.k
        RETURNING bookings.hold_id, bookings.event_id, bookings.user_email, bookings.quantity, bookings.total_amount,
                  bookings.expires_at, bookings.created_at, bookings.confirmed_at,
                  CASE WHEN bookings.expires_at <= clock_timestamp() THEN 'expired' ELSE 'pending' END AS status
    )
    SELECT r.n::int, r.outcome, v_price, v_expired,
           ins.hold_id, ins.event_id, ins.user_email, ins.quantity, ins.total_amount,
           ins.expires_at, ins.created_at, ins.confirmed_at, ins.status
    FROM unnest(v_outcomes, v_ids) WITH ORDINALITY AS r(outcome, id, n)
    LEFT JOIN ins ON ins.hold_id = r.id
    ORDER BY r.n;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off;


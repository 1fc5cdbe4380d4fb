-- One batch of holds in one call. The batcher used to spend a round trip per
-- step (begin, lock the event row, read the buyers' tickets, insert,
-- commit), and the event row stayed locked across all of them: each step a
-- wake-up of two processes on a busy machine, with every other buyer of the
-- event waiting behind the row. Called as one statement outside any
-- transaction, this function does the same steps inside the database, so
-- the row is locked from the SELECT ... FOR UPDATE to the commit of that
-- one statement and never across a network hop.
--
-- It serves the requests in the order given (p_emails[i], p_quantities[i]),
-- while the stock lasts, and answers each with one row: n (1-based), an
-- outcome, and the hold's columns when one was made. Outcomes:
--   held             a hold was inserted
--   sold_out         not enough tickets left for it
--   too_large        price x quantity does not fit total_amount
--   limit_exceeded   the buyer would own more than p_cap tickets (0: no cap)
--   not_found        no such event
-- Every row also carries the event's price (for the too_large message) and
-- how many lapsed holds the call expired (for the counters).
--
-- PL/pgSQL keeps each statement's plan for the session. A plan made while
-- bookings was nearly empty reads the whole table, or all the event's
-- bookings, and stays in use while the table grows: every batch then reads
-- every booking (measured: 1 ms per batch becoming 1.4 s after 100,000
-- bookings). Every lookup here has an index made for it, so the function
-- forbids sequential scans outright, and the two indexes a plan could pick
-- instead of the right one are dropped below; planning each statement
-- afresh on every call would cost 0.7 ms a batch.
--
-- The rules are those of the transaction the store runs when a batch carries
-- idempotency keys; store tests run both paths against the same cases.
-- The seed's single-column indexes: bookings_event_buyer (005) leads with
-- event_id and serves every query by event, and nothing looks bookings up
-- by email alone. Each cost every insert a write, and idx_bookings_event_id
-- was what a stale plan chose for the per-buyer count: all of the event's
-- bookings read and filtered, on every batch.
DROP INDEX IF EXISTS idx_bookings_event_id;
DROP INDEX IF EXISTS idx_bookings_user_email;

CREATE FUNCTION hold_batch(p_event bigint, p_emails text[], p_quantities int[], p_ttl_us bigint, p_cap int)
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
    v_keys text[];   -- each buyer's folded email, once
    v_owned int[];   -- what v_keys[k] owns of the event, this batch included
    v_pos int;
    v_gone_keys text[];   -- buyers of the batch whose lapsed holds it expired
    v_gone_tickets int[]; -- and the tickets those holds had
    v_gone int;
    v_q int;
BEGIN
    IF array_length(p_quantities, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % quantities', v_count, array_length(p_quantities, 1);
    END IF;
    -- The service validates quantities; a bad one here would have a
    -- batch's other requests granted from a stock it distorted.
    IF EXISTS (SELECT 1 FROM unnest(p_quantities) AS q WHERE q IS NULL OR q < 1) THEN
        RAISE EXCEPTION 'hold_batch: quantities must be positive' USING ERRCODE = '22023';
    END IF;

    SELECT e.available_tickets, e.ticket_price INTO v_available, v_price
    FROM events e WHERE e.id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT i::int, 'not_found', NULL::numeric, 0,
            NULL::uuid, NULL::int, NULL::varchar, NULL::int, NULL::numeric,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text
        FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;

    IF p_cap > 0 THEN
        -- Folded by the database, as the index is; a pending hold counts
        -- even once it has lapsed, until it is failed: a confirm already in
        -- flight may still take it.
        SELECT array_agg(d.folded), array_agg(d.tickets) INTO v_keys, v_owned
        FROM (
            SELECT f.folded, coalesce((
                SELECT sum(b.quantity) FROM bookings b
                WHERE b.event_id = p_event AND lower(b.user_email) = f.folded
                  AND b.booking_status IN ('pending', 'confirmed')), 0)::int AS tickets
            FROM (SELECT DISTINCT lower(u) AS folded FROM unnest(p_emails) AS u) f
        ) d;
    END IF;

    FOR i IN 1 .. v_count LOOP
        v_q := p_quantities[i];
        IF p_cap > 0 THEN
            v_pos := array_position(v_keys, lower(p_emails[i]));
        END IF;
        IF NOT v_tried_lapsed AND (v_available < v_q OR (p_cap > 0 AND v_owned[v_pos] + v_q > p_cap)) THEN
            -- Short of stock, or over the cap: give lapsed holds back
            -- first, so nobody is told sold out or limit_exceeded only
            -- because the sweeper has not run yet. Rows another
            -- transaction holds (a sweeper, a confirm) are skipped, and
            -- still count.
            v_tried_lapsed := true;
            WITH x AS (
                UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = now()
                WHERE id IN (
                    SELECT b.id FROM bookings b
                    WHERE b.event_id = p_event AND b.booking_status = 'pending' AND b.expires_at <= now()
                    FOR UPDATE SKIP LOCKED)
                RETURNING lower(bookings.user_email) AS folded, bookings.quantity
            ), g AS (
                SELECT x.folded, sum(x.quantity)::int AS tickets, count(*)::int AS holds FROM x GROUP BY x.folded
            )
            SELECT coalesce(sum(g.holds), 0)::int,
                   array_agg(g.folded) FILTER (WHERE g.folded = ANY (v_keys)),
                   array_agg(g.tickets) FILTER (WHERE g.folded = ANY (v_keys))
            INTO v_expired, v_gone_keys, v_gone_tickets
            FROM g;
            IF v_expired > 0 THEN
                -- The stock trigger gave their tickets back; this batch's
                -- grants are not inserted yet, so take them off again.
                SELECT e.available_tickets - v_taken INTO v_available FROM events e WHERE e.id = p_event;
                -- Nor do the expired holds count against their buyers.
                FOR k IN 1 .. coalesce(array_length(v_gone_keys, 1), 0) LOOP
                    v_gone := array_position(v_keys, v_gone_keys[k]);
                    v_owned[v_gone] := v_owned[v_gone] - v_gone_tickets[k];
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
        IF p_cap > 0 THEN
            IF v_owned[v_pos] + v_q > p_cap THEN
                v_outcomes[i] := 'limit_exceeded';
                CONTINUE;
            END IF;
            v_owned[v_pos] := v_owned[v_pos] + v_q;
        END IF;
        v_available := v_available - v_q;
        v_taken := v_taken + v_q;
        v_outcomes[i] := 'held';
        v_ids[i] := gen_random_uuid();
        v_granted := v_granted || i;
    END LOOP;

    -- One insert for the whole batch: the statement-level stock trigger
    -- takes all its tickets in one update of the event row.
    RETURN QUERY
    WITH ins AS (
        INSERT INTO bookings (hold_id, event_id, user_email, quantity, total_amount, booking_status, expires_at)
        SELECT v_ids[g.i], p_event, p_emails[g.i], p_quantities[g.i], v_price * p_quantities[g.i], 'pending',
               clock_timestamp() + p_ttl_us * interval '1 microsecond'
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

-- Sale day: an event's sale window and its waiting room.
--
-- on_sale_at and off_sale_at bound when the event's tickets may be held or
-- booked, by the database's clock (either NULL: on sale now, never closes).
-- The queue_* columns configure the event's waiting room in Redis; NULL
-- queue_admit_per_second means the event has no queue. bookings.queue_place
-- records the waiting room place whose pass took the booking, so a pass is
-- used once and the place can be marked done.
ALTER TABLE events
    ADD COLUMN on_sale_at timestamptz,
    ADD COLUMN off_sale_at timestamptz,
    ADD COLUMN queue_admit_per_second int,
    ADD COLUMN queue_pass_ttl_seconds int,
    ADD CONSTRAINT events_sale_window CHECK (off_sale_at > on_sale_at),
    ADD CONSTRAINT events_queue_rate CHECK (queue_admit_per_second BETWEEN 1 AND 100000),
    ADD CONSTRAINT events_queue_pass_ttl CHECK (queue_pass_ttl_seconds BETWEEN 10 AND 86400),
    -- A queue has both settings or neither.
    ADD CONSTRAINT events_queue_complete CHECK ((queue_admit_per_second IS NULL) = (queue_pass_ttl_seconds IS NULL));

ALTER TABLE bookings ADD COLUMN queue_place text;

-- hold_batch as in 006, with one block added: the sale window check, marked
-- [009 sale window]. A batch outside the window answers every request with
-- not_on_sale or sale_closed and grants nothing. Later versions of the
-- function (007 adds parameters) carry the same block in the same place.
CREATE OR REPLACE FUNCTION hold_batch(p_event bigint, p_emails text[], p_quantities int[], p_ttl_us bigint, p_cap int)
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
    v_sale text;     -- [009] the sale window's verdict, NULL while on sale
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

    -- [009 sale window] BEGIN. Ported as is onto every later version of
    -- hold_batch: right after the event row is locked (so an admin's change
    -- of the window cannot pass between the check and the grant), before
    -- anything is granted. By the database's clock, as expiry is.
    SELECT CASE WHEN e.on_sale_at > clock_timestamp() THEN 'not_on_sale'
                WHEN e.off_sale_at <= clock_timestamp() THEN 'sale_closed' END
    INTO v_sale FROM events e WHERE e.id = p_event;
    IF v_sale IS NOT NULL THEN
        RETURN QUERY SELECT i::int, v_sale, NULL::numeric, 0,
            NULL::uuid, NULL::int, NULL::varchar, NULL::int, NULL::numeric,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text
        FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;
    -- [009 sale window] END.

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

-- A pass whose booking was cancelled took holds again (an outside review):
-- hold_batch_events' pass_used check asked for a booking of the place that
-- is confirmed, and a cancel turns the booking failed (its confirmed_at
-- kept). The place read done, yet its unexpired pass bought the refunded
-- tickets ahead of the queue, which had not counted a reserve for them. A
-- pass is now used once any booking of its place was confirmed: one that is
-- confirmed, or has a confirmed_at (a cancel keeps it).
--
-- The check's own index (019) follows its predicate, so that it stays the
-- planner's only choice on any table; hold_batch_events is 025's but for
-- the check.

CREATE INDEX bookings_place_ever_confirmed ON bookings (event_id, queue_place)
    WHERE (booking_status = 'confirmed' OR confirmed_at IS NOT NULL) AND queue_place IS NOT NULL;
DROP INDEX bookings_place_confirmed;

CREATE OR REPLACE FUNCTION hold_batch_events(p_events bigint[], p_emails text[], p_keys text[], p_clients inet[],
                                  p_item_reqs int[], p_item_cats int[], p_item_qtys int[],
                                  p_ttl_us bigint, p_cap int, p_client_cap int,
                                  p_places text[] DEFAULT NULL, p_skip_locked boolean DEFAULT false)
RETURNS TABLE (n int, outcome text, price numeric, expired int,
               hold_id uuid, event_id int, user_email varchar, quantity int, total_amount numeric,
               expires_at timestamptz, created_at timestamptz, confirmed_at timestamptz, status text,
               short_category int, item_categories int[], item_quantities int[], item_prices numeric[])
AS $$
#variable_conflict use_column
DECLARE
    v_count int := coalesce(array_length(p_emails, 1), 0);
    v_outcomes text[] := array_fill(NULL::text, ARRAY[v_count]);
    v_ids uuid[] := array_fill(NULL::uuid, ARRAY[v_count]);
    v_granted int[] := '{}';
    v_expired int := 0;
    v_now timestamptz; -- when the holds are made, by the database's clock
    v_clock timestamptz; -- the database's clock when lapsed holds are expired
    r record;
    -- The events, distinct and ascending, and per event what the call has
    -- read and decided: found, its stock as the call leaves it, the queue
    -- flag, the sale window's verdict, what the call took, whether it
    -- expired the event's lapsed holds, and its categories' range in the
    -- v_cat_ arrays.
    v_ev_ids bigint[];
    v_nev int;
    v_ev_found boolean[];
    v_ev_avail int[];
    v_ev_queued boolean[];
    v_ev_refused text[]; -- the answer to all of its requests, if any: its sale window's, or locked
    v_ev_taken int[];
    v_ev_tried boolean[];
    v_ev_cat_first int[];
    v_ev_cat_last int[];
    v_req_ev int[]; -- each request's event, as a position in v_ev_ids
    v_e int;
    v_ev bigint;
    -- Every category of the call's events, by event then id.
    v_cat_ids int[];
    v_cat_ev bigint[];
    v_cat_avail int[];
    v_cat_price numeric[];
    v_cat_taken int[];
    v_ncat int;
    -- The caps, per event: each request's buyer and address as
    -- "event key", and the tickets of each already counted.
    v_rkeys text[];
    v_keys text[];
    v_owned int[];
    v_rclients text[];
    v_clients text[];
    v_held int[];
    v_pos int;
    v_cpos int;
    v_gone_n int;
    v_gone_keys text[];
    v_gone_tickets int[];
    v_gone_clients text[];
    v_gone_held int[];
    v_gone int;
    v_q int;
    v_place text;
    -- Per request and per item, as in 011.
    v_items int := coalesce(array_length(p_item_reqs, 1), 0);
    v_first int[] := array_fill(0, ARRAY[v_count]);
    v_last int[] := array_fill(-1, ARRAY[v_count]);
    v_item_cat int[] := array_fill(NULL::int, ARRAY[v_items]);
    v_item_pos int[] := array_fill(NULL::int, ARRAY[v_items]);
    v_item_price numeric[] := array_fill(NULL::numeric, ARRAY[v_items]);
    v_qtys int[] := array_fill(NULL::int, ARRAY[v_count]);
    v_amounts numeric[] := array_fill(NULL::numeric, ARRAY[v_count]);
    v_shorts int[] := array_fill(NULL::int, ARRAY[v_count]);
    v_granted_items int[] := '{}';
    v_short int;
    v_bad text;
    v_amount numeric;
    v_c int;
    v_k int;
BEGIN
    IF array_length(p_events, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_keys, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_clients, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % events, % keys, % clients', v_count,
            array_length(p_events, 1), array_length(p_keys, 1), array_length(p_clients, 1);
    END IF;
    IF array_length(p_item_cats, 1) IS DISTINCT FROM array_length(p_item_reqs, 1)
       OR array_length(p_item_qtys, 1) IS DISTINCT FROM array_length(p_item_reqs, 1) THEN
        RAISE EXCEPTION 'hold_batch: % item requests but % categories, % quantities', v_items,
            array_length(p_item_cats, 1), array_length(p_item_qtys, 1);
    END IF;
    IF p_places IS NOT NULL AND array_length(p_places, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % places', v_count, array_length(p_places, 1);
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_events) AS e WHERE e IS NULL) THEN
        RAISE EXCEPTION 'hold_batch: every request needs an event' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_item_qtys) AS q WHERE q IS NULL OR q < 1) THEN
        RAISE EXCEPTION 'hold_batch: quantities must be positive' USING ERRCODE = '22023';
    END IF;
    IF p_cap > 0 AND EXISTS (SELECT 1 FROM unnest(p_keys) AS k WHERE k IS NULL) THEN
        RAISE EXCEPTION 'hold_batch: every request needs a buyer key' USING ERRCODE = '22023';
    END IF;
    -- Each request's items, contiguous and in order (011).
    FOR j IN 1 .. v_items LOOP
        v_k := p_item_reqs[j];
        IF v_k IS NULL OR v_k < 1 OR v_k > v_count OR (j > 1 AND v_k < p_item_reqs[j - 1]) THEN
            RAISE EXCEPTION 'hold_batch: item % names request %, out of order', j, v_k USING ERRCODE = '22023';
        END IF;
        IF v_first[v_k] = 0 THEN
            v_first[v_k] := j;
        END IF;
        v_last[v_k] := j;
    END LOOP;
    IF EXISTS (SELECT 1 FROM unnest(v_first) AS f WHERE f = 0) THEN
        RAISE EXCEPTION 'hold_batch: every request needs an item' USING ERRCODE = '22023';
    END IF;
    IF v_count = 0 THEN
        RETURN;
    END IF;

    SELECT array_agg(DISTINCT x ORDER BY x) INTO v_ev_ids FROM unnest(p_events) AS x;
    v_nev := array_length(v_ev_ids, 1);
    SELECT array_agg(array_position(v_ev_ids, u.x) ORDER BY u.i) INTO v_req_ev
    FROM unnest(p_events) WITH ORDINALITY AS u(x, i);
    v_ev_found := array_fill(false, ARRAY[v_nev]);
    v_ev_avail := array_fill(0, ARRAY[v_nev]);
    v_ev_queued := array_fill(false, ARRAY[v_nev]);
    v_ev_refused := array_fill(NULL::text, ARRAY[v_nev]);
    v_ev_taken := array_fill(0, ARRAY[v_nev]);
    v_ev_tried := array_fill(false, ARRAY[v_nev]);
    v_ev_cat_first := array_fill(0, ARRAY[v_nev]);
    v_ev_cat_last := array_fill(-1, ARRAY[v_nev]);

    -- The event rows, locked in ascending id order (see the top of this
    -- file), each read with its lock. With p_skip_locked a row another
    -- transaction holds is passed over: its requests are answered locked,
    -- for the caller to serve that event alone, waiting for the row, while
    -- the call serves the others at once.
    IF p_skip_locked THEN
        FOR r IN
            SELECT e.id, e.available_tickets, e.queue_admit_per_second IS NOT NULL AS queued,
                   sale_window(e.on_sale_at, e.off_sale_at) AS sale
            FROM events e WHERE e.id = ANY (v_ev_ids)
            ORDER BY e.id
            FOR UPDATE SKIP LOCKED
        LOOP
            v_e := array_position(v_ev_ids, r.id::bigint);
            v_ev_found[v_e] := true;
            v_ev_avail[v_e] := r.available_tickets;
            v_ev_queued[v_e] := r.queued;
            v_ev_refused[v_e] := r.sale;
        END LOOP;
        -- Which of those not found exist (locked), only if any is not
        -- found: the batcher calls this way on every batch (schema/024).
        IF false = ANY (v_ev_found) THEN
            FOR r IN
                SELECT e.id FROM events e
                WHERE e.id = ANY (SELECT v_ev_ids[g] FROM generate_series(1, v_nev) AS g WHERE NOT v_ev_found[g])
            LOOP
                v_e := array_position(v_ev_ids, r.id::bigint);
                v_ev_found[v_e] := true;
                v_ev_refused[v_e] := 'locked';
            END LOOP;
        END IF;
    ELSE
        FOR r IN
            SELECT e.id, e.available_tickets, e.queue_admit_per_second IS NOT NULL AS queued,
                   sale_window(e.on_sale_at, e.off_sale_at) AS sale
            FROM events e WHERE e.id = ANY (v_ev_ids)
            ORDER BY e.id
            FOR UPDATE
        LOOP
            v_e := array_position(v_ev_ids, r.id::bigint);
            v_ev_found[v_e] := true;
            v_ev_avail[v_e] := r.available_tickets;
            v_ev_queued[v_e] := r.queued;
            v_ev_refused[v_e] := r.sale;
        END LOOP;
    END IF;

    -- The categories of the events on sale, read under their events' locks
    -- and not locked themselves (011 says why).
    SELECT array_agg(k.id ORDER BY k.event_id, k.id), array_agg(k.event_id ORDER BY k.event_id, k.id),
           array_agg(k.available_tickets ORDER BY k.event_id, k.id), array_agg(k.price ORDER BY k.event_id, k.id)
    INTO v_cat_ids, v_cat_ev, v_cat_avail, v_cat_price
    FROM categories k
    WHERE k.event_id = ANY (SELECT v_ev_ids[g] FROM generate_series(1, v_nev) AS g
                            WHERE v_ev_found[g] AND v_ev_refused[g] IS NULL);
    v_ncat := coalesce(array_length(v_cat_ids, 1), 0);
    v_cat_taken := array_fill(0, ARRAY[greatest(v_ncat, 1)]);
    FOR k IN 1 .. v_ncat LOOP
        v_e := array_position(v_ev_ids, v_cat_ev[k]);
        IF v_ev_cat_first[v_e] = 0 THEN
            v_ev_cat_first[v_e] := k;
        END IF;
        v_ev_cat_last[v_e] := k;
    END LOOP;

    IF p_cap > 0 THEN
        SELECT array_agg(u.ev::text || ' ' || u.k ORDER BY u.i) INTO v_rkeys
        FROM unnest(p_events, p_keys) WITH ORDINALITY AS u(ev, k, i);
        SELECT array_agg(d.rk), array_agg(d.tickets) INTO v_keys, v_owned
        FROM (
            SELECT u.ev::text || ' ' || u.k AS rk, coalesce((
                SELECT sum(b.quantity) FROM bookings b
                WHERE b.event_id = u.ev AND b.buyer_key = u.k
                  AND b.booking_status IN ('pending', 'confirmed')), 0)::int AS tickets
            FROM (SELECT DISTINCT ev, k FROM unnest(p_events, p_keys) AS x(ev, k)) u
        ) d;
    END IF;
    IF p_client_cap > 0 THEN
        SELECT array_agg(CASE WHEN u.c IS NOT NULL THEN u.ev::text || ' ' || u.c::text END ORDER BY u.i) INTO v_rclients
        FROM unnest(p_events, p_clients) WITH ORDINALITY AS u(ev, c, i);
        SELECT array_agg(d.rc), array_agg(d.tickets) INTO v_clients, v_held
        FROM (
            SELECT u.ev::text || ' ' || u.c::text AS rc, coalesce((
                SELECT sum(b.quantity) FROM bookings b
                WHERE b.event_id = u.ev AND b.client_addr = u.c
                  AND b.booking_status = 'pending'), 0)::int AS tickets
            FROM (SELECT DISTINCT ev, c FROM unnest(p_events, p_clients) AS x(ev, c) WHERE c IS NOT NULL) u
        ) d;
    END IF;

    FOR i IN 1 .. v_count LOOP
        v_e := v_req_ev[i];
        v_ev := v_ev_ids[v_e];
        IF NOT v_ev_found[v_e] THEN
            v_outcomes[i] := 'not_found';
            CONTINUE;
        END IF;
        IF v_ev_refused[v_e] IS NOT NULL THEN
            v_outcomes[i] := v_ev_refused[v_e];
            CONTINUE;
        END IF;
        -- The request's items, resolved against its event's categories.
        v_q := 0;
        v_bad := NULL;
        FOR j IN v_first[i] .. v_last[i] LOOP
            v_c := p_item_cats[j];
            IF v_c IS NULL THEN
                IF v_ev_cat_last[v_e] - v_ev_cat_first[v_e] <> 0 THEN
                    v_bad := 'category_required';
                    EXIT;
                END IF;
                v_c := v_cat_ids[v_ev_cat_first[v_e]];
            END IF;
            v_item_pos[j] := NULL;
            IF v_ev_cat_first[v_e] > 0 THEN
                v_item_pos[j] := array_position(v_cat_ids, v_c, v_ev_cat_first[v_e]);
            END IF;
            IF v_item_pos[j] IS NULL OR v_item_pos[j] > v_ev_cat_last[v_e] THEN
                v_bad := 'category_not_found';
                EXIT;
            END IF;
            v_item_cat[j] := v_c;
            v_item_price[j] := v_cat_price[v_item_pos[j]];
            v_q := v_q + p_item_qtys[j];
        END LOOP;
        IF v_bad IS NOT NULL THEN
            v_outcomes[i] := v_bad;
            CONTINUE;
        END IF;
        v_qtys[i] := v_q;
        IF v_ev_queued[v_e] THEN
            v_place := nullif(p_places[i], '');
            IF v_place IS NULL THEN
                v_outcomes[i] := 'queue_required';
                CONTINUE;
            END IF;
            -- Ever confirmed (028): a cancelled booking (failed, its
            -- confirmed_at kept) still used the pass. (/book/safe's
            -- bookings are confirmed without a confirmed_at.)
            IF EXISTS (SELECT 1 FROM bookings b
                       WHERE b.event_id = v_ev AND b.queue_place = v_place AND b.queue_place IS NOT NULL
                         AND (b.booking_status = 'confirmed' OR b.confirmed_at IS NOT NULL)) THEN
                v_outcomes[i] := 'pass_used';
                CONTINUE;
            END IF;
        END IF;
        v_pos := NULL;
        v_cpos := NULL;
        IF p_cap > 0 THEN
            v_pos := array_position(v_keys, v_rkeys[i]);
        END IF;
        IF p_client_cap > 0 AND v_rclients[i] IS NOT NULL THEN
            v_cpos := array_position(v_clients, v_rclients[i]);
        END IF;
        -- The first of the request's categories that is short.
        v_short := NULL;
        FOR j IN v_first[i] .. v_last[i] LOOP
            IF v_cat_avail[v_item_pos[j]] < p_item_qtys[j] THEN
                v_short := v_item_cat[j];
                EXIT;
            END IF;
        END LOOP;
        IF NOT v_ev_tried[v_e] AND (v_ev_avail[v_e] < v_q OR v_short IS NOT NULL
                OR (v_pos IS NOT NULL AND v_owned[v_pos] + v_q > p_cap)
                OR (v_cpos IS NOT NULL AND v_held[v_cpos] + v_q > p_client_cap)) THEN
            v_ev_tried[v_e] := true;
            -- Lapsed by the clock now, not when the call began: it may
            -- have waited for the event's row (schema/024).
            v_clock := clock_timestamp();
            WITH x AS (
                UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = v_clock
                WHERE id IN (
                    SELECT b.id FROM bookings b
                    WHERE b.event_id = v_ev AND b.booking_status = 'pending' AND b.expires_at <= v_clock
                    FOR UPDATE SKIP LOCKED)
                RETURNING bookings.buyer_key, bookings.client_addr, bookings.quantity
            ), g AS (
                SELECT v_ev::text || ' ' || x.buyer_key AS rk, sum(x.quantity)::int AS tickets, count(*)::int AS holds
                FROM x GROUP BY x.buyer_key
            ), c AS (
                SELECT v_ev::text || ' ' || x.client_addr::text AS rc, sum(x.quantity)::int AS tickets
                FROM x WHERE x.client_addr IS NOT NULL GROUP BY x.client_addr
            )
            SELECT (SELECT coalesce(sum(g.holds), 0)::int FROM g),
                   (SELECT array_agg(g.rk) FROM g WHERE g.rk = ANY (v_keys)),
                   (SELECT array_agg(g.tickets) FROM g WHERE g.rk = ANY (v_keys)),
                   (SELECT array_agg(c.rc) FROM c WHERE c.rc = ANY (v_clients)),
                   (SELECT array_agg(c.tickets) FROM c WHERE c.rc = ANY (v_clients))
            INTO v_gone_n, v_gone_keys, v_gone_tickets, v_gone_clients, v_gone_held;
            v_expired := v_expired + v_gone_n;
            IF v_gone_n > 0 THEN
                SELECT e.available_tickets - v_ev_taken[v_e] INTO v_c FROM events e WHERE e.id = v_ev;
                v_ev_avail[v_e] := v_c;
                -- And its categories, as the stock trigger left them.
                FOR k IN v_ev_cat_first[v_e] .. v_ev_cat_last[v_e] LOOP
                    SELECT c.available_tickets - v_cat_taken[k] INTO v_c FROM categories c WHERE c.id = v_cat_ids[k];
                    v_cat_avail[k] := v_c;
                END LOOP;
                FOR k IN 1 .. coalesce(array_length(v_gone_keys, 1), 0) LOOP
                    v_gone := array_position(v_keys, v_gone_keys[k]);
                    v_owned[v_gone] := v_owned[v_gone] - v_gone_tickets[k];
                END LOOP;
                FOR k IN 1 .. coalesce(array_length(v_gone_clients, 1), 0) LOOP
                    v_gone := array_position(v_clients, v_gone_clients[k]);
                    v_held[v_gone] := v_held[v_gone] - v_gone_held[k];
                END LOOP;
                v_short := NULL;
                FOR j IN v_first[i] .. v_last[i] LOOP
                    IF v_cat_avail[v_item_pos[j]] < p_item_qtys[j] THEN
                        v_short := v_item_cat[j];
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
        END IF;
        IF v_short IS NOT NULL THEN
            v_outcomes[i] := 'sold_out';
            -- The seed's body named no category: its answer stays the
            -- seed's.
            IF p_item_cats[v_first[i]] IS NOT NULL THEN
                v_shorts[i] := v_short;
            END IF;
            CONTINUE;
        END IF;
        IF v_ev_avail[v_e] < v_q THEN
            v_outcomes[i] := 'sold_out';
            CONTINUE;
        END IF;
        v_amount := 0;
        FOR j IN v_first[i] .. v_last[i] LOOP
            v_amount := v_amount + v_item_price[j] * p_item_qtys[j];
        END LOOP;
        IF v_amount > 99999999.99 THEN
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
        FOR j IN v_first[i] .. v_last[i] LOOP
            v_cat_avail[v_item_pos[j]] := v_cat_avail[v_item_pos[j]] - p_item_qtys[j];
            v_cat_taken[v_item_pos[j]] := v_cat_taken[v_item_pos[j]] + p_item_qtys[j];
            v_granted_items := v_granted_items || j;
        END LOOP;
        v_ev_avail[v_e] := v_ev_avail[v_e] - v_q;
        v_ev_taken[v_e] := v_ev_taken[v_e] + v_q;
        v_amounts[i] := v_amount;
        v_outcomes[i] := 'held';
        v_ids[i] := gen_random_uuid();
        v_granted := v_granted || i;
    END LOOP;

    -- A hold lasts exactly its TTL from when it is made (011).
    v_now := clock_timestamp();

    -- One statement inserts the call's holds, of every event, and their
    -- items, and answers every request.
    RETURN QUERY
    WITH ins AS (
        INSERT INTO bookings (hold_id, event_id, user_email, buyer_key, client_addr, quantity, total_amount,
                              booking_status, created_at, expires_at, queue_place)
        SELECT v_ids[g.i], p_events[g.i], p_emails[g.i], p_keys[g.i], p_clients[g.i], v_qtys[g.i],
               v_amounts[g.i], 'pending', v_now, v_now + p_ttl_us * interval '1 microsecond',
               nullif(p_places[g.i], '')
        FROM unnest(v_granted) WITH ORDINALITY AS g(i, k)
        ORDER BY g.k
        RETURNING bookings.id, bookings.hold_id, bookings.event_id, bookings.user_email, bookings.quantity,
                  bookings.total_amount, bookings.expires_at, bookings.created_at, bookings.confirmed_at,
                  CASE WHEN bookings.expires_at <= clock_timestamp() THEN 'expired' ELSE 'pending' END AS status
    ), items AS (
        INSERT INTO booking_items (booking_id, category_id, quantity, price)
        SELECT ins.id, v_item_cat[g.j], p_item_qtys[g.j], v_item_price[g.j]
        FROM unnest(v_granted_items) AS g(j)
        JOIN ins ON ins.hold_id = v_ids[p_item_reqs[g.j]]
    )
    SELECT r.n::int, r.outcome, NULL::numeric, v_expired,
           ins.hold_id, ins.event_id, ins.user_email, ins.quantity, ins.total_amount,
           ins.expires_at, ins.created_at, ins.confirmed_at, ins.status,
           v_shorts[r.n],
           CASE WHEN ins.hold_id IS NULL THEN NULL
                WHEN v_first[r.n] = v_last[r.n] THEN ARRAY[v_item_cat[v_first[r.n]]]
                ELSE v_item_cat[v_first[r.n] : v_last[r.n]] END,
           CASE WHEN ins.hold_id IS NULL THEN NULL
                WHEN v_first[r.n] = v_last[r.n] THEN ARRAY[p_item_qtys[v_first[r.n]]]
                ELSE p_item_qtys[v_first[r.n] : v_last[r.n]] END,
           CASE WHEN ins.hold_id IS NULL THEN NULL
                WHEN v_first[r.n] = v_last[r.n] THEN ARRAY[v_item_price[v_first[r.n]]]
                ELSE v_item_price[v_first[r.n] : v_last[r.n]] END
    FROM unnest(v_outcomes, v_ids) WITH ORDINALITY AS r(outcome, id, n)
    LEFT JOIN ins ON ins.hold_id = r.id
    ORDER BY r.n;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan;

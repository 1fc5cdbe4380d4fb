-- A request short of stock first expires its event's lapsed holds (011,
-- 013): those whose expiry has passed. "Passed" was read from now(), the
-- time the call's transaction began, and a call can begin long before it
-- decides: it waits for the event's row (up to lock_timeout: another
-- instance's batch, /book/safe, an admin's edit, on a hot event all the
-- time), and the keyed path's transaction waits for a same-key claim
-- first. A hold that lapsed meanwhile already reads expired everywhere
-- (GET /holds reads clock_timestamp()), yet the call passed it over and
-- answered sold_out, or limit_exceeded through the caps, for tickets that
-- were free. Both grant functions now read the clock when they expire.
-- The clock goes in a variable so the index on pending holds by expiry is
-- still walked by range (a volatile call in the condition would not be).
--
-- The functions are as in 015 (with 022's plan setting) and 016, but for
-- that, and for one statement hold_batch_events no longer runs when it has
-- no need: with p_skip_locked, the look for events that exist but were
-- locked, when every event was found. The batcher now calls it that way
-- for every batch on its lane (hold/batcher.go: a batch must not wait for
-- a held row on the lane), and that look was a hundred thousand
-- instructions a call, 3,400 a hold of a batch of 30 (callgrind).

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
            IF EXISTS (SELECT 1 FROM bookings b
                       WHERE b.event_id = v_ev AND b.queue_place = v_place AND b.queue_place IS NOT NULL
                         AND b.booking_status = 'confirmed') THEN
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
           CASE WHEN ins.hold_id IS NOT NULL THEN v_item_cat[v_first[r.n] : v_last[r.n]] END,
           CASE WHEN ins.hold_id IS NOT NULL THEN p_item_qtys[v_first[r.n] : v_last[r.n]] END,
           CASE WHEN ins.hold_id IS NOT NULL THEN v_item_price[v_first[r.n] : v_last[r.n]] END
    FROM unnest(v_outcomes, v_ids) WITH ORDINALITY AS r(outcome, id, n)
    LEFT JOIN ins ON ins.hold_id = r.id
    ORDER BY r.n;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan;

CREATE OR REPLACE FUNCTION hold_seats(p_event bigint, p_emails text[], p_keys text[], p_clients inet[],
                                      p_item_reqs int[], p_item_cats int[], p_item_qtys int[],
                                      p_seat_reqs int[], p_seat_ids text[],
                                      p_best_cats int[], p_best_qtys int[], p_best_sections text[],
                                      p_ttl_us bigint, p_cap int, p_client_cap int,
                                      p_places text[] DEFAULT NULL)
RETURNS TABLE (n int, outcome text, expired int,
               hold_id uuid, event_id int, user_email varchar, quantity int, total_amount numeric,
               expires_at timestamptz, created_at timestamptz, confirmed_at timestamptz, status text,
               short_category int, item_categories int[], item_quantities int[], item_prices numeric[],
               seats text[], refused_seats text[])
AS $$
#variable_conflict use_column
DECLARE
    v_count int := coalesce(array_length(p_emails, 1), 0);
    v_nseat int := coalesce(array_length(p_seat_reqs, 1), 0);
    v_found boolean;
    v_sale text;
    v_expired int := 0;
    v_clock timestamptz; -- the database's clock when lapsed holds are expired
    v_round int;
    v_short_any boolean;
    v_seated int[];
    v_ncat int;
    v_out text[];
    v_short int[];
    v_refused text[]; -- per request, comma-separated seat ids
    v_hold uuid[];
    v_holds hold_seats_hold[];
    -- The open blocks read, by lane then in the map's order: id, lane,
    -- where its marks start in the lane's string, how many seats.
    v_b_id int[];
    v_b_lane int[];
    v_b_start int[];
    v_b_len int[];
    v_b_dirty boolean[];
    v_dirty int[]; -- the blocks marked since last written, as positions in v_b_id
    -- The lanes: category, section, first and last block, marks.
    v_l_cat int[];
    v_l_sec text[];
    v_l_first int[];
    v_l_last int[];
    v_l_str text[];
    v_l_cut boolean[]; -- the lane has open blocks beyond those read
    v_nlane int;
    v_limit int;
    v_full boolean;
    v_flush boolean := false;
    -- The picks, in request order: request, block id, first place in the
    -- block (1-based), how many seats, category.
    v_pk_req int[];
    v_pk_blk int[];
    v_pk_idx int[];
    v_pk_n int[];
    v_pk_cat int[];
    -- The picks as seats, once resolved: request, seat, category, order.
    v_pick_req int[];
    v_pick_seat text[];
    v_pick_cat int[];
    v_k int;
    v_c int;
    v_q int;
    v_sec text;
    v_ids text[];
    v_bad text[];
    v_blks int[];
    v_idxs int[];
    v_cats int[];
    v_pats text[];
    v_got int;
    v_pos int;
    v_b int;
    v_l int;
    v_free int;
    v_n int;
    v_start int; -- this request's first pick
    -- the batch hold_batch serves
    v_sub int[];
    v_sub_item_reqs int[];
    v_sub_item_cats int[];
    v_sub_item_qtys int[];
    v_seated_req boolean;
    r record;
BEGIN
    IF array_length(p_best_cats, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_best_qtys, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_best_sections, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_seat_ids, 1) IS DISTINCT FROM array_length(p_seat_reqs, 1) THEN
        RAISE EXCEPTION 'hold_seats: % requests but best available for %, %, %; % seats for % requests', v_count,
            array_length(p_best_cats, 1), array_length(p_best_qtys, 1), array_length(p_best_sections, 1),
            array_length(p_seat_ids, 1), array_length(p_seat_reqs, 1) USING ERRCODE = '22023';
    END IF;
    FOR j IN 2 .. v_nseat LOOP
        IF p_seat_reqs[j] < p_seat_reqs[j - 1] THEN
            RAISE EXCEPTION 'hold_seats: seat % names request %, out of order', j, p_seat_reqs[j] USING ERRCODE = '22023';
        END IF;
    END LOOP;

    SELECT sale_window(e.on_sale_at, e.off_sale_at) INTO v_sale FROM events e WHERE e.id = p_event FOR UPDATE;
    v_found := FOUND;
    SELECT array_agg(DISTINCT k.category_id) INTO v_seated FROM seat_blocks k WHERE k.event_id = p_event;
    SELECT count(*) INTO v_ncat FROM categories k WHERE k.event_id = p_event;

    -- Requests past the first picks seldom look further than twice the
    -- batch's seats into a lane (the window below).
    v_limit := 64 + 2 * coalesce((SELECT sum(q) FROM unnest(p_best_qtys) AS q), 0)::int + v_nseat;

    FOR v_round IN 1 .. 2 LOOP
        v_out := array_fill(NULL::text, ARRAY[greatest(v_count, 1)]);
        v_short := array_fill(NULL::int, ARRAY[greatest(v_count, 1)]);
        v_refused := array_fill(NULL::text, ARRAY[greatest(v_count, 1)]);
        v_pk_req := '{}';
        v_pk_blk := '{}';
        v_pk_idx := '{}';
        v_pk_n := '{}';
        v_pk_cat := '{}';
        v_short_any := false;
        v_dirty := '{}';
        -- Nothing to pick for an event that is not there or not on sale:
        -- hold_batch answers those.
        EXIT WHEN NOT v_found OR v_sale IS NOT NULL;

        -- 1. The open blocks and their lanes, each lane's front first (the
        -- blocks before v_limit free seats): a request that finds no run
        -- that fits in a window cut short, or names a seat beyond it, has
        -- the marks written and every open block read before it picks.
        v_full := false;
        SELECT * INTO v_b_id, v_b_lane, v_b_start, v_b_len, v_l_cat, v_l_sec, v_l_first, v_l_last, v_l_str, v_l_cut
        FROM seat_lanes(p_event, v_limit);
        v_nlane := coalesce(array_length(v_l_cat, 1), 0);
        v_b_dirty := array_fill(false, ARRAY[greatest(coalesce(array_length(v_b_id, 1), 0), 1)]);

        -- 2. The picks, request by request, in the lanes.
        <<req>>
        FOR i IN 1 .. v_count LOOP
          <<try>>
          LOOP
            IF p_best_cats[i] IS NOT NULL THEN
                v_c := p_best_cats[i];
                v_q := p_best_qtys[i];
                v_sec := p_best_sections[i];
                IF v_q IS NULL OR v_q < 1 THEN
                    RAISE EXCEPTION 'hold_seats: best available of % seats', v_q USING ERRCODE = '22023';
                END IF;
                IF NOT v_c = ANY (coalesce(v_seated, '{}')) THEN
                    v_out[i] := CASE WHEN EXISTS (SELECT 1 FROM categories k WHERE k.id = v_c AND k.event_id = p_event)
                                     THEN 'not_seated' ELSE 'category_not_found' END;
                    CONTINUE req;
                END IF;
                -- 013's seat_blocks_pick: the first run that fits exactly
                -- or leaves two or more; else the first that fits; else,
                -- with that many free, single seats between taken ones
                -- first, then the frontmost free seats. Every block has
                -- '|' on both sides; a match of a pattern that starts with
                -- [0|] starts one before its seats.
                v_start := coalesce(array_length(v_pk_req, 1), 0) + 1;
                v_got := 0;
                v_pats := ARRAY['[0|](1{' || v_q || '}[0|]|1{' || (v_q + 2) || ',})', '1{' || v_q || '}'];
                FOR v_k IN 1 .. 4 LOOP
                    IF v_k = 3 THEN
                        v_free := 0;
                        FOR v_l IN 1 .. v_nlane LOOP
                            IF v_l_cat[v_l] = v_c AND (v_sec IS NULL OR v_l_sec[v_l] = v_sec) THEN
                                v_free := v_free + octet_length(v_l_str[v_l]) - octet_length(replace(v_l_str[v_l], '1', ''));
                            END IF;
                        END LOOP;
                        EXIT WHEN v_free < v_q;
                        v_pats := ARRAY['[0|]1[0|]', '1'];
                    END IF;
                    LOOP
                        v_pos := 0;
                        v_l := 0;
                        WHILE v_pos = 0 AND v_l < v_nlane LOOP
                            v_l := v_l + 1;
                            IF v_l_cat[v_l] = v_c AND (v_sec IS NULL OR v_l_sec[v_l] = v_sec) THEN
                                v_pos := regexp_instr(v_l_str[v_l], v_pats[1 + (v_k - 1) % 2]);
                            END IF;
                        END LOOP;
                        IF v_pos = 0 AND v_got = 0 AND NOT v_full
                           AND EXISTS (SELECT 1 FROM generate_series(1, v_nlane) AS g
                                       WHERE v_l_cut[g] AND v_l_cat[g] = v_c AND (v_sec IS NULL OR v_l_sec[g] = v_sec)) THEN
                            v_flush := true; -- then every open block, and this request again
                            EXIT;
                        END IF;
                        EXIT WHEN v_pos = 0;
                        IF v_k % 2 = 1 THEN
                            v_pos := v_pos + 1;
                        END IF;
                        -- The block: the lane's last that starts at or before v_pos.
                        v_b := v_l_first[v_l] - 1 + width_bucket(v_pos, v_b_start[v_l_first[v_l] : v_l_last[v_l]]);
                        v_n := CASE WHEN v_k <= 2 THEN v_q ELSE 1 END;
                        v_l_str[v_l] := overlay(v_l_str[v_l] PLACING repeat('0', v_n) FROM v_pos FOR v_n);
                        IF NOT v_b_dirty[v_b] THEN
                            v_b_dirty[v_b] := true;
                            v_dirty := v_dirty || v_b;
                        END IF;
                        v_pk_req := v_pk_req || i;
                        v_pk_blk := v_pk_blk || v_b_id[v_b];
                        v_pk_idx := v_pk_idx || (v_pos - v_b_start[v_b] + 1);
                        v_pk_n := v_pk_n || v_n;
                        v_pk_cat := v_pk_cat || v_c;
                        v_got := v_got + v_n;
                        EXIT WHEN v_got >= v_q OR v_k <= 2;
                    END LOOP;
                    EXIT WHEN v_got >= v_q OR v_flush;
                END LOOP;
                IF NOT v_flush AND v_got < v_q THEN
                    -- Fewer free than asked (or, past the count, none left
                    -- to take): what this request marked is free again.
                    FOR j IN v_start .. coalesce(array_length(v_pk_req, 1), 0) LOOP
                        v_b := array_position(v_b_id, v_pk_blk[j]);
                        v_l := v_b_lane[v_b];
                        v_l_str[v_l] := overlay(v_l_str[v_l] PLACING repeat('1', v_pk_n[j])
                                                FROM v_b_start[v_b] + v_pk_idx[j] - 1 FOR v_pk_n[j]);
                    END LOOP;
                    v_pk_req := v_pk_req[1 : v_start - 1];
                    v_pk_blk := v_pk_blk[1 : v_start - 1];
                    v_pk_idx := v_pk_idx[1 : v_start - 1];
                    v_pk_n := v_pk_n[1 : v_start - 1];
                    v_pk_cat := v_pk_cat[1 : v_start - 1];
                    v_out[i] := 'sold_out';
                    v_short[i] := v_c;
                    v_short_any := true;
                END IF;
            ELSIF v_nseat > 0 AND i = ANY (p_seat_reqs) THEN
                v_ids := ARRAY(SELECT p_seat_ids[j] FROM generate_series(1, v_nseat) AS j WHERE p_seat_reqs[j] = i ORDER BY j);
                SELECT array_agg(s.block_id ORDER BY u.o), array_agg(s.block_idx ORDER BY u.o), array_agg(s.category_id ORDER BY u.o),
                       array_agg(u.x ORDER BY u.o) FILTER (WHERE s.id IS NULL)
                INTO v_blks, v_idxs, v_cats, v_bad
                FROM unnest(v_ids) WITH ORDINALITY AS u(x, o)
                LEFT JOIN seats s ON s.event_id = p_event AND s.id = u.x;
                IF v_bad IS NOT NULL THEN
                    v_out[i] := 'seat_not_found';
                    v_refused[i] := array_to_string(v_bad, ',');
                    CONTINUE req;
                END IF;
                -- Taken: in no open block, or marked so in its lane.
                v_bad := '{}';
                FOR j IN 1 .. cardinality(v_ids) LOOP
                    v_b := array_position(v_b_id, v_blks[j]);
                    IF v_b IS NULL AND NOT v_full AND true = ANY (v_l_cut) THEN
                        v_flush := true; -- beyond the window, perhaps
                        EXIT;
                    END IF;
                    IF v_b IS NULL OR substr(v_l_str[v_b_lane[v_b]], v_b_start[v_b] + v_idxs[j] - 1, 1) <> '1' THEN
                        v_bad := v_bad || v_ids[j];
                    END IF;
                END LOOP;
                IF NOT v_flush THEN
                    IF cardinality(v_bad) > 0 THEN
                        v_out[i] := 'seat_taken';
                        v_refused[i] := array_to_string(v_bad, ',');
                        v_short_any := true;
                        CONTINUE req;
                    END IF;
                    FOR j IN 1 .. cardinality(v_ids) LOOP
                        v_b := array_position(v_b_id, v_blks[j]);
                        v_l := v_b_lane[v_b];
                        v_l_str[v_l] := overlay(v_l_str[v_l] PLACING '0' FROM v_b_start[v_b] + v_idxs[j] - 1 FOR 1);
                        IF NOT v_b_dirty[v_b] THEN
                            v_b_dirty[v_b] := true;
                            v_dirty := v_dirty || v_b;
                        END IF;
                        v_pk_req := v_pk_req || i;
                        v_pk_blk := v_pk_blk || v_blks[j];
                        v_pk_idx := v_pk_idx || v_idxs[j];
                        v_pk_n := v_pk_n || 1;
                        v_pk_cat := v_pk_cat || v_cats[j];
                    END LOOP;
                END IF;
            END IF;
            EXIT try WHEN NOT v_flush;
            -- The window was not enough: the marks so far written, every
            -- open block read, and request i picked again.
            PERFORM seat_lanes_write(v_dirty, v_b_id, v_b_lane, v_b_start, v_b_len, v_l_str);
            v_dirty := '{}';
            v_flush := false;
            v_full := true;
            SELECT * INTO v_b_id, v_b_lane, v_b_start, v_b_len, v_l_cat, v_l_sec, v_l_first, v_l_last, v_l_str, v_l_cut
            FROM seat_lanes(p_event, NULL);
            v_nlane := coalesce(array_length(v_l_cat, 1), 0);
            v_b_dirty := array_fill(false, ARRAY[greatest(coalesce(array_length(v_b_id, 1), 0), 1)]);
          END LOOP try;
        END LOOP req;

        -- The marks of every block picked from, written once.
        PERFORM seat_lanes_write(v_dirty, v_b_id, v_b_lane, v_b_start, v_b_len, v_l_str);
        v_dirty := '{}';
        EXIT WHEN NOT v_short_any OR v_round = 2;
        -- Some request went short: the lapsed holds' seats are owed back.
        -- Expired as hold_batch and the sweeper expire them; the trigger
        -- frees their seats and stock in the blocks; this round's picks
        -- are given back, and picked again. (Lapsed holds another
        -- transaction has locked, the sweeper's, are skipped: when none is
        -- expired here the picks stand.)
        v_clock := clock_timestamp(); -- not when the call began (schema/024)
        UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = v_clock
        WHERE id IN (SELECT b.id FROM bookings b
                     WHERE b.event_id = p_event AND b.booking_status = 'pending' AND b.expires_at <= v_clock
                     FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS v_k = ROW_COUNT;
        v_expired := v_expired + v_k;
        EXIT WHEN v_k = 0;
        v_ids := ARRAY(SELECT k.ids[p.idx + g.j - 1]
                       FROM unnest(v_pk_blk, v_pk_idx, v_pk_n) AS p(blk, idx, n)
                       JOIN seat_blocks k ON k.id = p.blk
                       CROSS JOIN LATERAL generate_series(1, p.n) AS g(j));
        IF cardinality(v_ids) > 0 THEN
            PERFORM seat_blocks_set(array_fill(p_event::int, ARRAY[cardinality(v_ids)]), v_ids, '1');
        END IF;
    END LOOP;

    -- 3. hold_batch for every request still standing.
    v_sub := '{}';
    v_sub_item_reqs := '{}';
    v_sub_item_cats := '{}';
    v_sub_item_qtys := '{}';
    FOR i IN 1 .. v_count LOOP
        CONTINUE WHEN v_out[i] IS NOT NULL;
        v_seated_req := p_best_cats[i] IS NOT NULL OR (v_nseat > 0 AND i = ANY (p_seat_reqs));
        IF v_seated_req AND (NOT v_found OR v_sale IS NOT NULL) THEN
            -- Nothing picked: hold_batch's answer is the event's or the
            -- window's, whatever the items.
            v_sub := v_sub || i;
            v_sub_item_reqs := v_sub_item_reqs || array_length(v_sub, 1);
            v_sub_item_cats := v_sub_item_cats || NULL::int;
            v_sub_item_qtys := v_sub_item_qtys || 1;
            CONTINUE;
        END IF;
        IF v_seated_req AND p_best_cats[i] IS NOT NULL THEN
            v_sub := v_sub || i;
            v_sub_item_reqs := v_sub_item_reqs || array_length(v_sub, 1);
            v_sub_item_cats := v_sub_item_cats || p_best_cats[i];
            v_sub_item_qtys := v_sub_item_qtys || p_best_qtys[i];
            CONTINUE;
        END IF;
        IF v_seated_req THEN
            v_sub := v_sub || i;
            FOR r IN SELECT p.c, count(*)::int AS q FROM unnest(v_pk_req, v_pk_cat) AS p(req, c)
                     WHERE p.req = i GROUP BY p.c ORDER BY p.c LOOP
                v_sub_item_reqs := v_sub_item_reqs || array_length(v_sub, 1);
                v_sub_item_cats := v_sub_item_cats || r.c;
                v_sub_item_qtys := v_sub_item_qtys || r.q;
            END LOOP;
            CONTINUE;
        END IF;
        -- A request of items (or of a quantity alone): never of a seated
        -- category.
        IF EXISTS (SELECT 1 FROM generate_series(1, coalesce(array_length(p_item_reqs, 1), 0)) AS j
                   WHERE p_item_reqs[j] = i
                     AND (p_item_cats[j] = ANY (coalesce(v_seated, '{}'))
                          OR (p_item_cats[j] IS NULL AND v_ncat = 1 AND v_seated IS NOT NULL))) THEN
            v_out[i] := 'seats_required';
            CONTINUE;
        END IF;
        v_sub := v_sub || i;
        FOR j IN 1 .. coalesce(array_length(p_item_reqs, 1), 0) LOOP
            IF p_item_reqs[j] = i THEN
                v_sub_item_reqs := v_sub_item_reqs || array_length(v_sub, 1);
                v_sub_item_cats := v_sub_item_cats || p_item_cats[j];
                v_sub_item_qtys := v_sub_item_qtys || p_item_qtys[j];
            END IF;
        END LOOP;
    END LOOP;

    v_hold := array_fill(NULL::uuid, ARRAY[greatest(v_count, 1)]);
    v_holds := array_fill(NULL::hold_seats_hold, ARRAY[greatest(v_count, 1)]);
    v_pick_req := '{}';
    v_pick_seat := '{}';
    v_pick_cat := '{}';
    IF array_length(v_sub, 1) > 0 THEN
        PERFORM set_config('holdfast.seating', 'on', true);
        FOR r IN SELECT hb.*
                 FROM hold_batch_events(array_fill(p_event, ARRAY[array_length(v_sub, 1)]),
                                 ARRAY(SELECT p_emails[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o),
                                 ARRAY(SELECT p_keys[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o),
                                 ARRAY(SELECT p_clients[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o),
                                 v_sub_item_reqs, v_sub_item_cats, v_sub_item_qtys,
                                 p_ttl_us, p_cap, p_client_cap,
                                 CASE WHEN p_places IS NULL THEN NULL
                                      ELSE ARRAY(SELECT p_places[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o) END) AS hb
        LOOP
            v_k := v_sub[r.n];
            v_out[v_k] := r.outcome;
            v_short[v_k] := coalesce(r.short_category, v_short[v_k]);
            v_expired := v_expired + coalesce(r.expired, 0);
            IF r.hold_id IS NOT NULL THEN
                v_hold[v_k] := r.hold_id;
                v_holds[v_k] := ROW(r.hold_id, r.event_id, r.user_email, r.quantity, r.total_amount,
                                    r.expires_at, r.created_at, r.confirmed_at, r.status,
                                    r.item_categories, r.item_quantities, r.item_prices)::hold_seats_hold;
            END IF;
        END LOOP;

        -- 4. The picks as seats, each request's in the map's order, and the
        -- granted holds' seats, one insert.
        IF coalesce(array_length(v_pk_req, 1), 0) > 0 THEN
            SELECT coalesce(array_agg(p.req ORDER BY p.req, k.section_pos, k.row_pos, k.block_pos, p.idx + u.j), '{}'),
                   coalesce(array_agg(u.sid ORDER BY p.req, k.section_pos, k.row_pos, k.block_pos, p.idx + u.j), '{}'),
                   coalesce(array_agg(p.cat ORDER BY p.req, k.section_pos, k.row_pos, k.block_pos, p.idx + u.j), '{}')
            INTO v_pick_req, v_pick_seat, v_pick_cat
            FROM unnest(v_pk_req, v_pk_blk, v_pk_idx, v_pk_n, v_pk_cat) AS p(req, blk, idx, n, cat)
            JOIN seat_blocks k ON k.id = p.blk
            CROSS JOIN LATERAL unnest(k.ids[p.idx : p.idx + p.n - 1]) WITH ORDINALITY AS u(sid, j);
            INSERT INTO booking_seats (booking_id, event_id, seat_id, category_id)
            SELECT b.id, p_event, p.seat, p.cat
            FROM unnest(v_pick_req, v_pick_seat, v_pick_cat) AS p(req, seat, cat)
            JOIN bookings b ON b.hold_id = v_hold[p.req]
            WHERE v_hold[p.req] IS NOT NULL;
        END IF;
        PERFORM set_config('holdfast.seating', 'off', true);
    END IF;
    -- The seats picked for requests hold_batch refused are free again.
    v_ids := ARRAY(SELECT p.seat FROM unnest(v_pick_req, v_pick_seat) AS p(req, seat) WHERE v_hold[p.req] IS NULL);
    IF cardinality(v_ids) > 0 THEN
        PERFORM seat_blocks_set(array_fill(p_event::int, ARRAY[cardinality(v_ids)]), v_ids, '1');
    END IF;

    RETURN QUERY
    SELECT g.i::int, v_out[g.i], v_expired,
           h.hold_id, h.event_id, h.user_email, h.quantity, h.total_amount,
           h.expires_at, h.created_at, h.confirmed_at, h.status,
           v_short[g.i],
           h.item_categories, h.item_quantities, h.item_prices,
           CASE WHEN h.hold_id IS NOT NULL THEN coalesce(st.seats, '{}') ELSE '{}' END,
           string_to_array(v_refused[g.i], ',')
    FROM generate_series(1, v_count) AS g(i)
    LEFT JOIN LATERAL (SELECT (v_holds[g.i]).*) h ON true
    LEFT JOIN (SELECT p.req, array_agg(p.seat ORDER BY p.o) AS seats
               FROM unnest(v_pick_req, v_pick_seat) WITH ORDINALITY AS p(req, seat, o)
               GROUP BY p.req) st ON st.req = g.i
    ORDER BY g.i;
END;
$$ LANGUAGE plpgsql;

-- Best available across rows, and past the window before the next
-- section (an outside review, with tests in store/bestseats_test.go):
--
-- 1. When no row has a request's seats side by side, hold_seats took single
--    seats between taken ones, then the frontmost free seats one by one,
--    with no regard for what that left: four of rows of 3, 2 and 2 free
--    were row 1 and one seat of row 2, stranding row 2's other seat, where
--    rows 2 and 3 strand nothing. The contract: never leave a single free
--    seat stranded when another choice avoids it. seat_fill now chooses
--    the seats across the runs of free seats (each run taken whole, or
--    left with two or more), and the old way is kept for when every choice
--    strands a seat.
-- 2. A lane (a category's section) cut short by the window with no match
--    in what was read passed the request on to the next lane's match, in a
--    later section, though the cut lane might have one beyond the window,
--    earlier in the map's order. The whole map is now read first, as it
--    already was when no lane had a match.
-- 3. A best_available of a section the map does not have was answered
--    sold_out; it is now section_not_found (404), read only when the pick
--    fails.
--
-- hold_seats is 024's (016's with 024's clock) but for those three.

-- seat_fill chooses how many seats to take from the front of each run of
-- free seats p_lens (in the map's order), p_q in all, leaving no run with
-- a single seat: a run is taken whole, or left with two or more (so never
-- all but one of it). Runs of one seat, stranded already, are taken first,
-- as many as a choice allows; among the rest, the runs first in the map's
-- order. NULL when every choice leaves a seat stranded. Each sum up to p_q
-- is reached from the first runs that reach it (a knapsack over the runs,
-- p_q by the runs' count), and is not revisited.
CREATE FUNCTION seat_fill(p_lens int[], p_q int) RETURNS int[] AS $$
DECLARE
    v_n int := coalesce(array_length(p_lens, 1), 0);
    -- For each sum s (at s + 1): the run whose take first reached it (0:
    -- not reached; -1: the empty choice), and how many it takes.
    v_at int[] := array_fill(0, ARRAY[p_q + 1]);
    v_by int[] := array_fill(0, ARRAY[p_q + 1]);
    v_take int[] := array_fill(0, ARRAY[greatest(v_n, 1)]);
    v_ones int := 0;
    v_one int;
    v_len int;
    v_s int;
    v_reached int := 0; -- sums 1 to p_q reached
BEGIN
    IF p_q < 1 THEN
        RETURN NULL;
    END IF;
    v_at[1] := -1;
    FOR i IN 1 .. v_n LOOP
        v_len := p_lens[i];
        IF v_len = 1 THEN
            v_ones := v_ones + 1;
            EXIT WHEN v_reached = p_q AND v_ones >= p_q;
            CONTINUE;
        END IF;
        -- Every sum reached by the runs before: a later run changes none
        -- (each keeps the first runs that reach it); only its singles
        -- still count.
        CONTINUE WHEN v_reached = p_q;
        -- From the largest sum down, so that every sum a take of this run
        -- builds on was reached by earlier runs.
        FOR s IN REVERSE p_q .. 1 LOOP
            CONTINUE WHEN v_at[s + 1] <> 0;
            FOR c IN 1 .. least(v_len, s) LOOP
                CONTINUE WHEN c = v_len - 1;
                IF v_at[s - c + 1] <> 0 THEN
                    v_at[s + 1] := i;
                    v_by[s + 1] := c;
                    v_reached := v_reached + 1;
                    EXIT;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    FOR ones IN REVERSE least(v_ones, p_q) .. 0 LOOP
        CONTINUE WHEN v_at[p_q - ones + 1] = 0;
        v_s := p_q - ones;
        WHILE v_s > 0 LOOP
            v_take[v_at[v_s + 1]] := v_by[v_s + 1];
            v_s := v_s - v_by[v_s + 1];
        END LOOP;
        v_one := ones;
        FOR i IN 1 .. v_n LOOP
            EXIT WHEN v_one = 0;
            IF p_lens[i] = 1 THEN
                v_take[i] := 1;
                v_one := v_one - 1;
            END IF;
        END LOOP;
        RETURN v_take;
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql IMMUTABLE;

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
    v_passed boolean; -- a lane cut short, with no match in what was read, came first
    v_r_lane int[]; -- the runs of free seats fill (027) chooses from: lane, place, length
    v_r_pos int[];
    v_r_len int[];
    v_takes int[]; -- how many seats fill takes from the front of each run
    v_f int;
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
                -- or leaves two or more; else the first that fits. Else,
                -- with that many free, seats across runs (027): as seat_fill
                -- chooses, so that no seat is left without a neighbour when
                -- a choice allows it; and only when none does, single
                -- seats between taken ones first, then the frontmost free
                -- seats. Every block has '|' on both sides; a match of a
                -- pattern that starts with [0|] starts one before its
                -- seats.
                v_start := coalesce(array_length(v_pk_req, 1), 0) + 1;
                v_got := 0;
                v_pats := ARRAY['[0|](1{' || v_q || '}[0|]|1{' || (v_q + 2) || ',})', '1{' || v_q || '}'];
                FOR v_k IN 1 .. 5 LOOP
                    IF v_k = 3 THEN
                        -- The runs of free seats of the request's lanes, in
                        -- the map's order, in one statement that reads each
                        -- lane's marks once (a regular expression a run
                        -- read the lane from its start each time: 4.6 s a
                        -- request on a fragmented hall of 10,000 seats): a
                        -- run is a stretch of '1' whose places, less their
                        -- rank among the free ones, are one number.
                        SELECT coalesce(array_agg(r.l ORDER BY r.l, r.p), '{}'), coalesce(array_agg(r.p ORDER BY r.l, r.p), '{}'),
                               coalesce(array_agg(r.n ORDER BY r.l, r.p), '{}'), coalesce(sum(r.n), 0)::int
                        INTO v_r_lane, v_r_pos, v_r_len, v_free
                        FROM (SELECT x.l::int AS l, min(x.o)::int AS p, count(*)::int AS n
                              FROM (SELECT ln.l, t.o, t.o - row_number() OVER (PARTITION BY ln.l ORDER BY t.o) AS run
                                    FROM unnest(v_l_str, v_l_cat, v_l_sec) WITH ORDINALITY AS ln(s, cat, sec, l),
                                         string_to_table(ln.s, NULL) WITH ORDINALITY AS t(ch, o)
                                    WHERE ln.cat = v_c AND (v_sec IS NULL OR ln.sec = v_sec) AND t.ch = '1') x
                              GROUP BY x.l, x.run) r;
                        EXIT WHEN v_free < v_q;
                        v_takes := seat_fill(v_r_len, v_q);
                        CONTINUE WHEN v_takes IS NULL;
                        v_f := 0;
                    ELSIF v_k = 4 THEN
                        v_pats := ARRAY['[0|]1[0|]', '1'];
                    END IF;
                    LOOP
                        v_pos := 0;
                        v_passed := false;
                        IF v_k = 3 THEN
                            -- The next run fill takes seats of.
                            LOOP
                                v_f := v_f + 1;
                                EXIT WHEN v_f > cardinality(v_takes) OR v_takes[v_f] > 0;
                            END LOOP;
                            IF v_f <= cardinality(v_takes) THEN
                                v_l := v_r_lane[v_f];
                                v_pos := v_r_pos[v_f];
                            END IF;
                        ELSE
                            v_l := 0;
                            WHILE v_pos = 0 AND v_l < v_nlane LOOP
                                v_l := v_l + 1;
                                IF v_l_cat[v_l] = v_c AND (v_sec IS NULL OR v_l_sec[v_l] = v_sec) THEN
                                    v_pos := regexp_instr(v_l_str[v_l], v_pats[CASE WHEN v_k IN (1, 4) THEN 1 ELSE 2 END]);
                                    v_passed := v_passed OR (v_pos = 0 AND v_l_cut[v_l]);
                                END IF;
                            END LOOP;
                        END IF;
                        -- A lane cut short that had no match in what was
                        -- read may have one beyond it, before a match in a
                        -- later lane (027: it only looked when no lane had
                        -- one).
                        IF v_passed AND v_got = 0 AND NOT v_full THEN
                            v_flush := true; -- then every open block, and this request again
                            EXIT;
                        END IF;
                        EXIT WHEN v_pos = 0;
                        IF v_k IN (1, 4) THEN
                            v_pos := v_pos + 1;
                        END IF;
                        -- The block: the lane's last that starts at or before v_pos.
                        v_b := v_l_first[v_l] - 1 + width_bucket(v_pos, v_b_start[v_l_first[v_l] : v_l_last[v_l]]);
                        v_n := CASE WHEN v_k <= 2 THEN v_q WHEN v_k = 3 THEN v_takes[v_f] ELSE 1 END;
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
                    IF v_sec IS NOT NULL AND NOT EXISTS (SELECT 1 FROM seat_blocks k WHERE k.event_id = p_event AND k.section = v_sec) THEN
                        -- A section the map does not have is not sold out
                        -- (027): the buyer would never learn of the typo.
                        v_out[i] := 'section_not_found';
                    ELSE
                        v_out[i] := 'sold_out';
                        v_short[i] := v_c;
                        v_short_any := true;
                    END IF;
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


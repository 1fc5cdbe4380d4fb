-- Reserved seating: a seat map per event, seats held and sold as records.
--
-- A seat is a row of seats, in one category of its event; its id is
-- 'section-row-number'. The positions (section_pos, row_pos, seat_pos: the
-- order the admin API listed them in) say which seats are side by side: two
-- seats of one row are neighbours when their seat_pos differ by one.
--
-- A booking's seats are rows of booking_seats, kept after the booking ends
-- (a hold's seats stay readable: a webhook renders them later) with live
-- turned off when the booking turns failed, by a trigger on bookings, so
-- every way a hold ends (release, expiry by the sweeper or by a batch,
-- cancellation) gives its seats back exactly once, as the stock triggers
-- give back its tickets. The unique partial index on live rows is what
-- refuses a second live booking of one seat, whatever any code does.
CREATE TABLE seats (
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    section TEXT NOT NULL,
    row_name TEXT NOT NULL,
    number INTEGER NOT NULL CHECK (number > 0),
    category_id INTEGER NOT NULL REFERENCES categories(id) ON DELETE CASCADE,
    section_pos INTEGER NOT NULL,
    row_pos INTEGER NOT NULL,
    seat_pos INTEGER NOT NULL,
    PRIMARY KEY (event_id, id),
    CONSTRAINT seats_one_place UNIQUE (event_id, section_pos, row_pos, seat_pos),
    CONSTRAINT seats_id_named CHECK (id = section || '-' || row_name || '-' || number)
);
-- Whether a category is seated, for the items' trigger below.
CREATE INDEX seats_category ON seats (category_id);

CREATE TABLE booking_seats (
    -- A failed booking may be deleted (008); its seats go with it.
    booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL,
    seat_id TEXT NOT NULL,
    category_id INTEGER NOT NULL,
    live BOOLEAN NOT NULL DEFAULT true,
    PRIMARY KEY (booking_id, seat_id)
);
CREATE UNIQUE INDEX booking_seats_one_live ON booking_seats (event_id, seat_id) WHERE live;

-- A seat of a booking is inserted live, for a live booking of the seat's
-- event and of a seat of that event in its category.
CREATE FUNCTION booking_seats_check_insert()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_seats n
               LEFT JOIN bookings b ON b.id = n.booking_id
               LEFT JOIN seats s ON s.event_id = n.event_id AND s.id = n.seat_id
               WHERE NOT n.live OR b.booking_status NOT IN ('pending', 'confirmed')
                  OR b.event_id <> n.event_id OR s.id IS NULL OR s.category_id <> n.category_id) THEN
        RAISE EXCEPTION 'a booking''s seat must be a seat of its event and category, inserted live for a live booking'
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER booking_seats_check_insert
AFTER INSERT ON booking_seats
REFERENCING NEW TABLE AS new_seats
FOR EACH STATEMENT
EXECUTE FUNCTION booking_seats_check_insert();

-- A booking's seat changes only by going back (live off), and only once its
-- booking has failed.
CREATE FUNCTION booking_seats_guard()
RETURNS TRIGGER AS $$
BEGIN
    IF (NEW.booking_id, NEW.event_id, NEW.seat_id, NEW.category_id)
           IS DISTINCT FROM (OLD.booking_id, OLD.event_id, OLD.seat_id, OLD.category_id)
       OR NOT OLD.live OR NEW.live
       OR NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = NEW.booking_id AND b.booking_status = 'failed') THEN
        RAISE EXCEPTION 'a booking''s seat only goes back, once, when its booking fails' USING ERRCODE = 'HF001';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER booking_seats_guard
BEFORE UPDATE ON booking_seats
FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
EXECUTE FUNCTION booking_seats_guard();

CREATE TRIGGER booking_seats_live_kept
BEFORE DELETE ON booking_seats
FOR EACH ROW WHEN (OLD.live)
EXECUTE FUNCTION bookings_refuse('a live booking''s seat cannot be deleted: fail the booking first', 'HF001');

CREATE TRIGGER booking_seats_no_truncate
BEFORE TRUNCATE ON booking_seats
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_refuse_truncate();

-- A booking turning failed gives its seats back: once, since only a
-- pending or confirmed booking turns failed (004) and a failed one never
-- changes again.
CREATE FUNCTION bookings_give_back_seats()
RETURNS TRIGGER AS $$
BEGIN
    UPDATE booking_seats s SET live = false
    FROM old_bookings o JOIN new_bookings n ON n.id = o.id
    WHERE s.booking_id = n.id AND s.live
      AND o.booking_status IN ('pending', 'confirmed') AND n.booking_status = 'failed';
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_give_back_seats
AFTER UPDATE ON bookings
REFERENCING OLD TABLE AS old_bookings NEW TABLE AS new_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_give_back_seats();

-- The seat map is fixed while anything of its event is held or sold, and a
-- seat is in a category of its own event. A seat never changes: a map is
-- redefined by deleting and inserting.
CREATE FUNCTION seats_map_fixed_insert()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_seats n JOIN categories c ON c.id = n.category_id WHERE c.event_id <> n.event_id) THEN
        RAISE EXCEPTION 'a seat must be in a category of its event' USING ERRCODE = 'HF001';
    END IF;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT event_id FROM new_seats) e
               WHERE EXISTS (SELECT 1 FROM bookings b WHERE b.event_id = e.event_id
                             AND b.booking_status IN ('pending', 'confirmed'))) THEN
        RAISE EXCEPTION 'an event''s seat map changes only while nothing of the event is held or sold'
            USING ERRCODE = 'HF004';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION seats_map_fixed_delete()
RETURNS TRIGGER AS $$
BEGIN
    -- An event deleted takes its seats with it: nothing is left to guard.
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT event_id FROM old_seats) e
               WHERE EXISTS (SELECT 1 FROM events ev WHERE ev.id = e.event_id)
                 AND EXISTS (SELECT 1 FROM bookings b WHERE b.event_id = e.event_id
                             AND b.booking_status IN ('pending', 'confirmed'))) THEN
        RAISE EXCEPTION 'an event''s seat map changes only while nothing of the event is held or sold'
            USING ERRCODE = 'HF004';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER seats_map_fixed_insert
AFTER INSERT ON seats
REFERENCING NEW TABLE AS new_seats
FOR EACH STATEMENT
EXECUTE FUNCTION seats_map_fixed_insert();

CREATE TRIGGER seats_map_fixed_delete
AFTER DELETE ON seats
REFERENCING OLD TABLE AS old_seats
FOR EACH STATEMENT
EXECUTE FUNCTION seats_map_fixed_delete();

CREATE TRIGGER seats_fixed
BEFORE UPDATE ON seats
FOR EACH ROW
EXECUTE FUNCTION bookings_refuse('a seat never changes: redefine the map', 'HF001');

-- A seated category is sold by its seats: an item of one is inserted only
-- by hold_seats, which gives the booking its seats in the same call (it
-- says so in the transaction-local setting holdfast.seating). Any other
-- path (hold_batch called for a request of a quantity alone, /book/safe,
-- plain SQL) is refused with HF005, which the store answers by serving the
-- batch through hold_seats, so the request is told to name seats.
CREATE FUNCTION booking_items_seated()
RETURNS TRIGGER AS $$
BEGIN
    IF coalesce(current_setting('holdfast.seating', true), '') <> 'on'
       AND EXISTS (SELECT 1 FROM new_items i WHERE EXISTS (SELECT 1 FROM seats s WHERE s.category_id = i.category_id)) THEN
        RAISE EXCEPTION 'a seated category is held by its seats' USING ERRCODE = 'HF005';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER booking_items_seated
AFTER INSERT ON booking_items
REFERENCING NEW TABLE AS new_items
FOR EACH STATEMENT
EXECUTE FUNCTION booking_items_seated();

-- hold_seats serves a batch of hold requests for one event of which some
-- ask for seats: named seats (p_seat_reqs[j] the request, 1-based and
-- non-decreasing, p_seat_ids[j] the seat) or the best available
-- (p_best_cats[i] the category, NULL for none; p_best_qtys[i] how many;
-- p_best_sections[i] the section, NULL for any). A request of neither
-- brings its items as hold_batch takes them (p_item_reqs, p_item_cats,
-- p_item_qtys; its request numbers are those of this batch).
--
-- It picks the seats and hands every request that got them, with its
-- seats' categories as items, to hold_batch, the one writing of the rules
-- that grant a hold (sale window, waiting room, caps, the event's and the
-- categories' stock, lapsed holds' expiry): seats add a choice before those
-- rules, never a rule of their own. Then it gives each granted hold its
-- seats. Order of work:
--
--   1. lock the event row, as hold_batch does first (it locks it again, a
--      no-op): one picker of seats per event at a time, so two requests of
--      one batch or of two batches never pick one seat; the sale window
--      (sale_window, 009) is read with it, so a closed sale picks nothing.
--   2. pick, request by request in order, among the seats that have no live
--      booking and were not picked earlier in the batch:
--        named: all or nothing; seat_taken names those taken,
--               seat_not_found those the event does not have.
--        best:  the free seats of the category (and section) as runs of
--               neighbours, in the map's order (front rows first). The first
--               run that fits the request exactly or leaves at least two
--               seats; else the first that fits leaving one (a single is
--               stranded only when no row avoids it); else, when no row has
--               that many side by side, seats from several runs, the
--               shortest runs first, so singles left by earlier choices go
--               first; else sold_out naming the category. Seats come from a
--               run's left end, so what is left of it stays one run.
--      If any request went short and the event has lapsed holds, they are
--      expired (as hold_batch and the sweeper do) and the picking is done
--      again: their seats are free.
--   3. lock the picked seats FOR UPDATE SKIP LOCKED: the event lock makes
--      this a formality for pickers, but a seat another transaction holds
--      locked (whatever it is doing) is not waited for: its request is told
--      seat_taken.
--   4. hold_batch for the requests still standing; a request of a quantity
--      alone for a seated category is refused here (seats_required).
--   5. the granted holds' seats, one insert; then one row per request,
--      in order: hold_batch's outcome, the hold as stored, its seats.
--
-- The transaction-local setting holdfast.seating is on while hold_batch
-- runs, so booking_items_seated lets its seated items in; it is off again
-- before return.
CREATE FUNCTION hold_seats(p_event bigint, p_emails text[], p_keys text[], p_clients inet[],
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
    v_round int;
    v_short_any boolean;
    v_seated int[];
    v_ncat int;
    v_out text[];
    v_short int[];
    v_refused text[]; -- per request, comma-separated seat ids
    v_hold uuid[];
    -- the picks, in request order: request, seat, category
    v_pick_req int[];
    v_pick_seat text[];
    v_pick_cat int[];
    -- free runs: category, section, seat ids (comma-separated), taken from the left, length left
    v_run_cat int[];
    v_run_sec text[];
    v_run_ids text[];
    v_run_off int[];
    v_run_len int[];
    v_nrun int;
    v_need int;
    v_take int;
    v_k int;
    v_c int;
    v_q int;
    v_sec text;
    v_ids text[];
    v_bad text[];
    v_locked text[];
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
    SELECT array_agg(DISTINCT s.category_id) INTO v_seated FROM seats s WHERE s.event_id = p_event;
    SELECT count(*) INTO v_ncat FROM categories k WHERE k.event_id = p_event;

    FOR v_round IN 1 .. 2 LOOP
        v_out := array_fill(NULL::text, ARRAY[greatest(v_count, 1)]);
        v_short := array_fill(NULL::int, ARRAY[greatest(v_count, 1)]);
        v_refused := array_fill(NULL::text, ARRAY[greatest(v_count, 1)]);
        v_pick_req := '{}';
        v_pick_seat := '{}';
        v_pick_cat := '{}';
        v_short_any := false;
        -- Nothing to pick for an event that is not there or not on sale:
        -- hold_batch answers those.
        EXIT WHEN NOT v_found OR v_sale IS NOT NULL;

        -- The free seats of the categories asked for best available, as runs.
        SELECT array_agg(x.category_id ORDER BY x.section_pos, x.row_pos, x.grp),
               array_agg(x.section ORDER BY x.section_pos, x.row_pos, x.grp),
               array_agg(x.ids ORDER BY x.section_pos, x.row_pos, x.grp),
               array_agg(x.len ORDER BY x.section_pos, x.row_pos, x.grp)
        INTO v_run_cat, v_run_sec, v_run_ids, v_run_len
        FROM (
            SELECT f.category_id, f.section, f.section_pos, f.row_pos, f.grp,
                   string_agg(f.id, ',' ORDER BY f.seat_pos) AS ids, count(*)::int AS len
            FROM (
                SELECT s.id, s.category_id, s.section, s.section_pos, s.row_pos, s.seat_pos,
                       s.seat_pos - row_number() OVER (PARTITION BY s.category_id, s.section_pos, s.row_pos
                                                       ORDER BY s.seat_pos) AS grp
                FROM seats s
                WHERE s.event_id = p_event
                  AND s.category_id IN (SELECT c FROM unnest(p_best_cats) AS c WHERE c IS NOT NULL)
                  AND NOT EXISTS (SELECT 1 FROM booking_seats b
                                  WHERE b.event_id = s.event_id AND b.seat_id = s.id AND b.live)
            ) f
            GROUP BY f.category_id, f.section, f.section_pos, f.row_pos, f.grp
        ) x;
        v_nrun := coalesce(array_length(v_run_cat, 1), 0);
        v_run_off := array_fill(0, ARRAY[greatest(v_nrun, 1)]);

        FOR i IN 1 .. v_count LOOP
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
                    CONTINUE;
                END IF;
                -- One run: the first that fits leaving none or two or more;
                -- else the first that fits leaving one.
                v_k := NULL;
                FOR k IN 1 .. v_nrun LOOP
                    CONTINUE WHEN v_run_cat[k] <> v_c OR v_run_len[k] < v_q
                               OR (v_sec IS NOT NULL AND v_run_sec[k] <> v_sec);
                    IF v_run_len[k] <> v_q + 1 THEN
                        v_k := k;
                        EXIT;
                    END IF;
                    IF v_k IS NULL THEN
                        v_k := -k;
                    END IF;
                END LOOP;
                IF v_k IS NOT NULL THEN
                    v_k := abs(v_k);
                    v_ids := (string_to_array(v_run_ids[v_k], ','))[v_run_off[v_k] + 1 : v_run_off[v_k] + v_q];
                    v_run_off[v_k] := v_run_off[v_k] + v_q;
                    v_run_len[v_k] := v_run_len[v_k] - v_q;
                ELSE
                    -- Several runs, the shortest first.
                    v_need := v_q;
                    v_ids := '{}';
                    FOR r IN SELECT g.k FROM generate_series(1, v_nrun) AS g(k)
                             WHERE v_run_cat[g.k] = v_c AND v_run_len[g.k] > 0
                               AND (v_sec IS NULL OR v_run_sec[g.k] = v_sec)
                             ORDER BY v_run_len[g.k], g.k LOOP
                        v_k := r.k;
                        EXIT WHEN v_need = 0;
                        v_take := least(v_need, v_run_len[v_k]);
                        v_ids := v_ids || (string_to_array(v_run_ids[v_k], ','))[v_run_off[v_k] + 1 : v_run_off[v_k] + v_take];
                        v_need := v_need - v_take;
                    END LOOP;
                    IF v_need > 0 THEN
                        v_out[i] := 'sold_out';
                        v_short[i] := v_c;
                        v_short_any := true;
                        CONTINUE;
                    END IF;
                    -- Taken for good only now that the request is served.
                    v_need := v_q;
                    FOR r IN SELECT g.k FROM generate_series(1, v_nrun) AS g(k)
                             WHERE v_run_cat[g.k] = v_c AND v_run_len[g.k] > 0
                               AND (v_sec IS NULL OR v_run_sec[g.k] = v_sec)
                             ORDER BY v_run_len[g.k], g.k LOOP
                        v_k := r.k;
                        EXIT WHEN v_need = 0;
                        v_take := least(v_need, v_run_len[v_k]);
                        v_run_off[v_k] := v_run_off[v_k] + v_take;
                        v_run_len[v_k] := v_run_len[v_k] - v_take;
                        v_need := v_need - v_take;
                    END LOOP;
                END IF;
                v_pick_req := v_pick_req || array_fill(i, ARRAY[v_q]);
                v_pick_seat := v_pick_seat || v_ids;
                v_pick_cat := v_pick_cat || array_fill(v_c, ARRAY[v_q]);
            ELSIF v_nseat > 0 AND i = ANY (p_seat_reqs) THEN
                v_ids := ARRAY(SELECT p_seat_ids[j] FROM generate_series(1, v_nseat) AS j WHERE p_seat_reqs[j] = i ORDER BY j);
                SELECT array_agg(x ORDER BY o) INTO v_bad FROM unnest(v_ids) WITH ORDINALITY AS u(x, o)
                WHERE NOT EXISTS (SELECT 1 FROM seats s WHERE s.event_id = p_event AND s.id = u.x);
                IF v_bad IS NOT NULL THEN
                    v_out[i] := 'seat_not_found';
                    v_refused[i] := array_to_string(v_bad, ',');
                    CONTINUE;
                END IF;
                SELECT array_agg(x ORDER BY o) INTO v_bad FROM unnest(v_ids) WITH ORDINALITY AS u(x, o)
                WHERE u.x = ANY (v_pick_seat)
                   OR EXISTS (SELECT 1 FROM booking_seats b WHERE b.event_id = p_event AND b.seat_id = u.x AND b.live);
                IF v_bad IS NOT NULL THEN
                    v_out[i] := 'seat_taken';
                    v_refused[i] := array_to_string(v_bad, ',');
                    v_short_any := true;
                    CONTINUE;
                END IF;
                v_pick_req := v_pick_req || array_fill(i, ARRAY[array_length(v_ids, 1)]);
                v_pick_seat := v_pick_seat || v_ids;
                v_pick_cat := v_pick_cat || ARRAY(SELECT s.category_id FROM unnest(v_ids) WITH ORDINALITY AS u(x, o)
                                                  JOIN seats s ON s.event_id = p_event AND s.id = u.x ORDER BY u.o);
            END IF;
        END LOOP;

        EXIT WHEN NOT v_short_any OR v_round = 2;
        -- Some request went short: the lapsed holds' seats are owed back.
        -- Expired as hold_batch and the sweeper expire them; the trigger
        -- frees their seats and stock.
        UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = now()
        WHERE id IN (SELECT b.id FROM bookings b
                     WHERE b.event_id = p_event AND b.booking_status = 'pending' AND b.expires_at <= now()
                     FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS v_k = ROW_COUNT;
        v_expired := v_expired + v_k;
        EXIT WHEN v_k = 0;
    END LOOP;

    -- 3. The picked seats, locked; one another transaction has locked is
    -- not waited for.
    IF array_length(v_pick_seat, 1) > 0 THEN
        SELECT array_agg(s.id) INTO v_locked FROM (
            SELECT s.id FROM seats s WHERE s.event_id = p_event AND s.id = ANY (v_pick_seat)
            FOR UPDATE SKIP LOCKED) s;
        IF coalesce(array_length(v_locked, 1), 0) < array_length(v_pick_seat, 1) THEN
            FOR j IN 1 .. array_length(v_pick_seat, 1) LOOP
                IF NOT v_pick_seat[j] = ANY (coalesce(v_locked, '{}')) THEN
                    v_out[v_pick_req[j]] := 'seat_taken';
                    v_refused[v_pick_req[j]] := concat_ws(',', v_refused[v_pick_req[j]], v_pick_seat[j]);
                END IF;
            END LOOP;
        END IF;
    END IF;

    -- 4. hold_batch for every request still standing.
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
        IF v_seated_req THEN
            v_sub := v_sub || i;
            FOR r IN SELECT p.c, count(*)::int AS q FROM unnest(v_pick_req, v_pick_cat) AS p(req, c)
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
    IF array_length(v_sub, 1) > 0 THEN
        PERFORM set_config('holdfast.seating', 'on', true);
        FOR r IN SELECT hb.n, hb.outcome, hb.expired, hb.hold_id, hb.short_category
                 FROM hold_batch(p_event,
                                 ARRAY(SELECT p_emails[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o),
                                 ARRAY(SELECT p_keys[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o),
                                 ARRAY(SELECT p_clients[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o),
                                 v_sub_item_reqs, v_sub_item_cats, v_sub_item_qtys,
                                 p_ttl_us, p_cap, p_client_cap,
                                 CASE WHEN p_places IS NULL THEN NULL
                                      ELSE ARRAY(SELECT p_places[s] FROM unnest(v_sub) WITH ORDINALITY AS u(s, o) ORDER BY o) END) AS hb
        LOOP
            v_out[v_sub[r.n]] := r.outcome;
            v_short[v_sub[r.n]] := coalesce(r.short_category, v_short[v_sub[r.n]]);
            v_hold[v_sub[r.n]] := r.hold_id;
            v_expired := v_expired + coalesce(r.expired, 0);
        END LOOP;
        PERFORM set_config('holdfast.seating', 'off', true);

        -- 5. The granted holds' seats.
        INSERT INTO booking_seats (booking_id, event_id, seat_id, category_id)
        SELECT b.id, p_event, p.seat, p.cat
        FROM unnest(v_pick_req, v_pick_seat, v_pick_cat) AS p(req, seat, cat)
        JOIN bookings b ON b.hold_id = v_hold[p.req]
        WHERE v_hold[p.req] IS NOT NULL;
    END IF;

    RETURN QUERY
    SELECT g.i::int, v_out[g.i], v_expired,
           b.hold_id, b.event_id, b.user_email, b.quantity, b.total_amount,
           b.expires_at, b.created_at, b.confirmed_at,
           CASE WHEN b.id IS NULL THEN NULL WHEN b.expires_at <= clock_timestamp() THEN 'expired' ELSE 'pending' END,
           v_short[g.i],
           ARRAY(SELECT it.category_id FROM booking_items it WHERE it.booking_id = b.id ORDER BY it.category_id),
           ARRAY(SELECT it.quantity FROM booking_items it WHERE it.booking_id = b.id ORDER BY it.category_id),
           ARRAY(SELECT it.price FROM booking_items it WHERE it.booking_id = b.id ORDER BY it.category_id),
           ARRAY(SELECT p.seat FROM unnest(v_pick_req, v_pick_seat) AS p(req, seat)
                 JOIN seats s ON s.event_id = p_event AND s.id = p.seat
                 WHERE p.req = g.i AND b.id IS NOT NULL ORDER BY s.section_pos, s.row_pos, s.seat_pos),
           string_to_array(v_refused[g.i], ',')
    FROM generate_series(1, v_count) AS g(i)
    LEFT JOIN bookings b ON b.hold_id = v_hold[g.i]
    ORDER BY g.i;
END;
$$ LANGUAGE plpgsql;

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
    -- The seat's block (below) and its place in it, 1-based; set by the
    -- trigger that builds the blocks.
    block_id INTEGER,
    block_idx INTEGER,
    PRIMARY KEY (event_id, id),
    CONSTRAINT seats_one_place UNIQUE (event_id, section_pos, row_pos, seat_pos),
    CONSTRAINT seats_id_named CHECK (id = section || '-' || row_name || '-' || number)
);
-- Whether a category is seated, for the items' trigger below.
CREATE INDEX seats_category ON seats (category_id);

-- A block is a run of neighbouring seats of one category in one row, as
-- the map defines them (a seat of another category, or a gap in the
-- positions, ends it). free holds one character a seat, in order: '1'
-- free, '0' taken. It is what best available reads: finding the first row
-- with n free neighbours that strand no single is one regular expression
-- over a short string per block, in the map's order, instead of a window
-- over every free seat of the venue (235 ms a batch at 20,000 seats). The
-- truth stays booking_seats: the triggers below keep free in step with it
-- (a seat booked turns '0', a seat given back '1'), hold_seats marks the
-- seats it picks before it books them and clears those it could not book,
-- and holdfast check compares the two.
CREATE TABLE seat_blocks (
    id SERIAL PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    category_id INTEGER NOT NULL,
    section TEXT NOT NULL,
    section_pos INTEGER NOT NULL,
    row_pos INTEGER NOT NULL,
    block_pos INTEGER NOT NULL,
    ids TEXT[] NOT NULL,
    free TEXT NOT NULL CHECK (free ~ '^[01]*$'),
    CONSTRAINT seat_blocks_whole CHECK (length(free) = cardinality(ids))
);
-- Best available walks the blocks that still have a free seat, in the
-- map's order: a sold-out front is not read again and again.
CREATE INDEX seat_blocks_open ON seat_blocks (event_id, category_id, section_pos, row_pos, block_pos)
    WHERE free LIKE '%1%';
CREATE INDEX seat_blocks_event ON seat_blocks (event_id);

-- seat_blocks_set marks seats (p_events[i], p_seats[i]) free ('1') or
-- taken ('0') in their blocks, one update per block.
CREATE FUNCTION seat_blocks_set(p_events int[], p_seats text[], p_mark text)
RETURNS void AS $$
BEGIN
    UPDATE seat_blocks b SET free = x.free
    FROM (
        SELECT k.id, string_agg(CASE WHEN g.i = ANY (m.idxs) THEN p_mark ELSE substr(k.free, g.i, 1) END, '' ORDER BY g.i) AS free
        FROM (SELECT st.block_id, array_agg(st.block_idx) AS idxs
              FROM unnest(p_events, p_seats) AS u(e, s)
              JOIN seats st ON st.event_id = u.e AND st.id = u.s
              GROUP BY st.block_id) m
        JOIN seat_blocks k ON k.id = m.block_id
        CROSS JOIN LATERAL generate_series(1, length(k.free)) AS g(i)
        GROUP BY k.id
    ) x
    WHERE b.id = x.id;
END;
$$ LANGUAGE plpgsql; -- not sql: PL/pgSQL keeps the statement's plan across calls

-- seat_blocks_rebuild makes the blocks of the events' maps again, each
-- seat's mark from its live bookings.
CREATE FUNCTION seat_blocks_rebuild(p_events int[])
RETURNS void AS $$
BEGIN
    DELETE FROM seat_blocks WHERE event_id = ANY (p_events);
    WITH o AS (
        SELECT s.event_id, s.id, s.category_id, s.section, s.section_pos, s.row_pos, s.seat_pos,
               CASE WHEN lag(s.seat_pos) OVER w = s.seat_pos - 1 AND lag(s.category_id) OVER w = s.category_id
                    THEN 0 ELSE 1 END AS starts
        FROM seats s WHERE s.event_id = ANY (p_events)
        WINDOW w AS (PARTITION BY s.event_id, s.section_pos, s.row_pos ORDER BY s.seat_pos)
    ), g AS (
        SELECT o.*, sum(o.starts) OVER (PARTITION BY o.event_id, o.section_pos, o.row_pos ORDER BY o.seat_pos) AS blk
        FROM o
    ), ins AS (
        INSERT INTO seat_blocks (event_id, category_id, section, section_pos, row_pos, block_pos, ids, free)
        SELECT g.event_id, min(g.category_id), min(g.section), g.section_pos, g.row_pos, min(g.seat_pos),
               array_agg(g.id ORDER BY g.seat_pos),
               string_agg(CASE WHEN EXISTS (SELECT 1 FROM booking_seats b
                                            WHERE b.event_id = g.event_id AND b.seat_id = g.id AND b.live)
                               THEN '0' ELSE '1' END, '' ORDER BY g.seat_pos)
        FROM g GROUP BY g.event_id, g.section_pos, g.row_pos, g.blk
        RETURNING seat_blocks.id, seat_blocks.event_id, seat_blocks.ids
    )
    UPDATE seats st SET block_id = ins.id, block_idx = u.i
    FROM ins CROSS JOIN LATERAL unnest(ins.ids) WITH ORDINALITY AS u(sid, i)
    WHERE st.event_id = ins.event_id AND st.id = u.sid;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE booking_seats (
    -- A failed booking may be deleted (008); its seats go with it
    -- (bookings_delete_seats). No foreign key: its check would cost a
    -- lookup per seat booked, and the insert's trigger reads the booking
    -- anyway.
    booking_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    seat_id TEXT NOT NULL,
    category_id INTEGER NOT NULL,
    live BOOLEAN NOT NULL DEFAULT true,
    PRIMARY KEY (booking_id, seat_id)
);
CREATE UNIQUE INDEX booking_seats_one_live ON booking_seats (event_id, seat_id) WHERE live;

-- A seat of a booking is inserted live, for a live booking of the seat's
-- event and of a seat of that event in its category; its block marks it
-- taken.
CREATE FUNCTION booking_seats_check_insert()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_seats n
               LEFT JOIN bookings b ON b.id = n.booking_id
               LEFT JOIN seats s ON s.event_id = n.event_id AND s.id = n.seat_id
               WHERE NOT n.live OR b.id IS NULL OR b.booking_status NOT IN ('pending', 'confirmed')
                  OR b.event_id <> n.event_id OR s.id IS NULL OR s.category_id <> n.category_id) THEN
        RAISE EXCEPTION 'a booking''s seat must be a seat of its event and category, inserted live for a live booking'
            USING ERRCODE = 'HF001';
    END IF;
    -- hold_seats marked its picks as it made them (holdfast.seating is on
    -- while it books them); any other writer's seats are marked here.
    IF coalesce(current_setting('holdfast.seating', true), '') <> 'on' THEN
        PERFORM seat_blocks_set(ARRAY(SELECT n.event_id FROM new_seats n), ARRAY(SELECT n.seat_id FROM new_seats n), '0');
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

CREATE FUNCTION bookings_delete_seats()
RETURNS TRIGGER AS $$
BEGIN
    DELETE FROM booking_seats s USING old_bookings o WHERE s.booking_id = o.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_delete_seats
AFTER DELETE ON bookings
REFERENCING OLD TABLE AS old_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_delete_seats();

CREATE TRIGGER booking_seats_no_truncate
BEFORE TRUNCATE ON booking_seats
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_refuse_truncate();

-- A booking turning failed gives its seats back: once, since only a
-- pending or confirmed booking turns failed (004) and a failed one never
-- changes again. It fires after the stock trigger (booking_status_change_update
-- sorts first), which waits for the event row's lock: a hold_seats picking
-- seats of the event has committed by then.
CREATE FUNCTION bookings_give_back_seats()
RETURNS TRIGGER AS $$
DECLARE
    v_events int[];
    v_seats text[];
BEGIN
    WITH g AS (
        UPDATE booking_seats s SET live = false
        FROM old_bookings o JOIN new_bookings n ON n.id = o.id
        WHERE s.booking_id = n.id AND s.live
          AND o.booking_status IN ('pending', 'confirmed') AND n.booking_status = 'failed'
        RETURNING s.event_id, s.seat_id
    )
    SELECT array_agg(g.event_id), array_agg(g.seat_id) INTO v_events, v_seats FROM g;
    -- The seat had this one live booking (the unique index): it is free.
    IF v_events IS NOT NULL THEN
        PERFORM seat_blocks_set(v_events, v_seats, '1');
    END IF;
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
    PERFORM seat_blocks_rebuild(ARRAY(SELECT DISTINCT n.event_id FROM new_seats n));
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
    PERFORM seat_blocks_rebuild(ARRAY(SELECT DISTINCT o.event_id FROM old_seats o
                                      WHERE EXISTS (SELECT 1 FROM events ev WHERE ev.id = o.event_id)));
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

-- (but for its block, which the blocks' rebuild sets)
CREATE TRIGGER seats_fixed
BEFORE UPDATE ON seats
FOR EACH ROW WHEN ((OLD.event_id, OLD.id, OLD.section, OLD.row_name, OLD.number, OLD.category_id,
                    OLD.section_pos, OLD.row_pos, OLD.seat_pos)
                   IS DISTINCT FROM (NEW.event_id, NEW.id, NEW.section, NEW.row_name, NEW.number, NEW.category_id,
                                     NEW.section_pos, NEW.row_pos, NEW.seat_pos))
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

-- seat_blocks_take takes p_n free seats from the start of the first run
-- of free seats that matches p_pat (a regular expression over a block's
-- marks, which may take in the '0' before the run) in the first block of
-- category p_cat (of section p_sec, NULL for any) in the map's order, and
-- marks them taken; NULL when no block matches. Blocks are locked FOR
-- UPDATE SKIP LOCKED: a block another transaction holds is passed over,
-- never waited for.
CREATE FUNCTION seat_blocks_take(p_event bigint, p_cat int, p_sec text, p_pat text, p_n int)
RETURNS text[] AS $$
DECLARE
    v_ids text[];
BEGIN
    WITH c AS (
        SELECT k.id, m.p + CASE WHEN substr(k.free, m.p, 1) = '0' THEN 1 ELSE 0 END AS p
        FROM seat_blocks k
        CROSS JOIN LATERAL (SELECT regexp_instr(k.free, p_pat) AS p) m
        WHERE k.event_id = p_event AND k.category_id = p_cat AND (p_sec IS NULL OR k.section = p_sec)
          AND k.free LIKE '%1%' AND k.free ~ p_pat
        ORDER BY k.section_pos, k.row_pos, k.block_pos
        LIMIT 1 FOR UPDATE OF k SKIP LOCKED
    )
    UPDATE seat_blocks k SET free = overlay(k.free PLACING repeat('0', p_n) FROM c.p FOR p_n)
    FROM c WHERE k.id = c.id
    RETURNING k.ids[c.p : c.p + p_n - 1] INTO v_ids;
    RETURN v_ids;
END;
$$ LANGUAGE plpgsql; -- not sql: PL/pgSQL keeps the statement's plan across calls

-- seat_blocks_pick takes the best p_q free seats of category p_cat (of
-- section p_sec, NULL for any) and marks them taken; NULL when there are
-- fewer free. In the map's order (front rows first), the first block with
-- a run of free seats that fits exactly or leaves two or more; else the
-- first that fits leaving one (a single is stranded only when no row
-- avoids it); else, when no row has that many side by side, single seats
-- between taken ones first, then the frontmost free seats. Seats come from
-- a run's left end.
CREATE FUNCTION seat_blocks_pick(p_event bigint, p_cat int, p_q int, p_sec text)
RETURNS text[] AS $$
DECLARE
    v_pat text;
    v_ids text[];
    v_all text[] := '{}';
    v_free int;
BEGIN
    FOREACH v_pat IN ARRAY ARRAY['(^|0)(1{' || p_q || '}(0|$)|1{' || (p_q + 2) || ',})', '1{' || p_q || '}'] LOOP
        v_ids := seat_blocks_take(p_event, p_cat, p_sec, v_pat, p_q);
        IF v_ids IS NOT NULL THEN
            RETURN v_ids;
        END IF;
    END LOOP;
    SELECT coalesce(sum(length(replace(k.free, '0', ''))), 0) INTO v_free
    FROM seat_blocks k
    WHERE k.event_id = p_event AND k.category_id = p_cat AND (p_sec IS NULL OR k.section = p_sec);
    IF v_free < p_q THEN
        RETURN NULL;
    END IF;
    FOREACH v_pat IN ARRAY ARRAY['(^|0)1(0|$)', '1'] LOOP
        WHILE cardinality(v_all) < p_q LOOP
            v_ids := seat_blocks_take(p_event, p_cat, p_sec, v_pat, 1);
            EXIT WHEN v_ids IS NULL;
            v_all := v_all || v_ids;
        END LOOP;
    END LOOP;
    IF cardinality(v_all) < p_q THEN
        -- Free seats only in blocks others hold locked: nothing taken.
        PERFORM seat_blocks_set(array_fill(p_event::int, ARRAY[cardinality(v_all)]), v_all, '1');
        RETURN NULL;
    END IF;
    RETURN v_all;
END;
$$ LANGUAGE plpgsql;

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
--   2. pick, request by request in order, among the seats their blocks
--      mark free (no live booking has them, no earlier request of the
--      batch picked them), marking each request's seats taken as it goes.
--      Only the blocks and the map are read here, never booking_seats: a
--      plan cached while booking_seats was small (a scan) would stay as it
--      grows. Should the marks ever be wrong, the unique index refuses the
--      booking and the store rebuilds the event's blocks (seat_blocks_rebuild)
--      before it tries again:
--        named: all or nothing; seat_taken names those taken,
--               seat_not_found those the event does not have.
--        best:  seat_blocks_pick (above); sold_out naming the category
--               when fewer are free.
--      If any request went short, the event's lapsed holds are expired
--      (as hold_batch and the sweeper do; those the sweeper has locked are
--      skipped) and, when any was, the picks are given back and made
--      again: the lapsed holds' seats are free.
--   3. hold_batch for the requests still standing; a request of a quantity
--      alone for a seated category is refused here (seats_required).
--   4. the granted holds' seats, one insert; the seats of requests
--      hold_batch refused marked free again; then one row per request, in
--      order: hold_batch's outcome, the hold as stored, its seats.
--
-- The transaction-local setting holdfast.seating is on while hold_batch
-- runs and the seats are inserted, so booking_items_seated lets the seated
-- items in and the seats' insert leaves their marks (made while picking)
-- alone; it is off again before return.
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
    v_k int;
    v_c int;
    v_q int;
    v_sec text;
    v_ids text[];
    v_bad text[];
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
                v_ids := seat_blocks_pick(p_event, v_c, v_q, v_sec);
                IF v_ids IS NULL THEN
                    v_out[i] := 'sold_out';
                    v_short[i] := v_c;
                    v_short_any := true;
                    CONTINUE;
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
                   OR EXISTS (SELECT 1 FROM seats st JOIN seat_blocks k ON k.id = st.block_id
                              WHERE st.event_id = p_event AND st.id = u.x AND substr(k.free, st.block_idx, 1) = '0');
                IF v_bad IS NOT NULL THEN
                    v_out[i] := 'seat_taken';
                    v_refused[i] := array_to_string(v_bad, ',');
                    v_short_any := true;
                    CONTINUE;
                END IF;
                PERFORM seat_blocks_set(array_fill(p_event::int, ARRAY[cardinality(v_ids)]), v_ids, '0');
                v_pick_req := v_pick_req || array_fill(i, ARRAY[array_length(v_ids, 1)]);
                v_pick_seat := v_pick_seat || v_ids;
                v_pick_cat := v_pick_cat || ARRAY(SELECT s.category_id FROM unnest(v_ids) WITH ORDINALITY AS u(x, o)
                                                  JOIN seats s ON s.event_id = p_event AND s.id = u.x ORDER BY u.o);
            END IF;
        END LOOP;

        EXIT WHEN NOT v_short_any OR v_round = 2;
        -- Some request went short: the lapsed holds' seats are owed back.
        -- Expired as hold_batch and the sweeper expire them; the trigger
        -- frees their seats and stock; this round's picks are given back
        -- first, and picked again.
        -- (Lapsed holds another transaction has locked, the sweeper's,
        -- are skipped: when none is expired here the picks stand.)
        UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired', updated_at = now()
        WHERE id IN (SELECT b.id FROM bookings b
                     WHERE b.event_id = p_event AND b.booking_status = 'pending' AND b.expires_at <= now()
                     FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS v_k = ROW_COUNT;
        v_expired := v_expired + v_k;
        EXIT WHEN v_k = 0;
        PERFORM seat_blocks_set(array_fill(p_event::int, ARRAY[cardinality(v_pick_seat)]), v_pick_seat, '1');
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

        -- 4. The granted holds' seats.
        INSERT INTO booking_seats (booking_id, event_id, seat_id, category_id)
        SELECT b.id, p_event, p.seat, p.cat
        FROM unnest(v_pick_req, v_pick_seat, v_pick_cat) AS p(req, seat, cat)
        JOIN bookings b ON b.hold_id = v_hold[p.req]
        WHERE v_hold[p.req] IS NOT NULL;
        PERFORM set_config('holdfast.seating', 'off', true);
    END IF;
    -- The seats picked for requests hold_batch refused are free again.
    v_ids := ARRAY(SELECT p.seat FROM unnest(v_pick_req, v_pick_seat) AS p(req, seat) WHERE v_hold[p.req] IS NULL);
    IF cardinality(v_ids) > 0 THEN
        PERFORM seat_blocks_set(array_fill(p_event::int, ARRAY[cardinality(v_ids)]), v_ids, '1');
    END IF;

    RETURN QUERY
    SELECT g.i::int, v_out[g.i], v_expired,
           b.hold_id, b.event_id, b.user_email, b.quantity, b.total_amount,
           b.expires_at, b.created_at, b.confirmed_at,
           CASE WHEN b.id IS NULL THEN NULL WHEN b.expires_at <= clock_timestamp() THEN 'expired' ELSE 'pending' END,
           v_short[g.i],
           it.cats, it.qtys, it.prices,
           ARRAY(SELECT p.seat FROM unnest(v_pick_req, v_pick_seat) AS p(req, seat)
                 JOIN seats s ON s.event_id = p_event AND s.id = p.seat
                 WHERE p.req = g.i AND b.id IS NOT NULL ORDER BY s.section_pos, s.row_pos, s.seat_pos),
           string_to_array(v_refused[g.i], ',')
    FROM generate_series(1, v_count) AS g(i)
    LEFT JOIN bookings b ON b.hold_id = v_hold[g.i]
    LEFT JOIN LATERAL (
        SELECT array_agg(x.category_id ORDER BY x.category_id) AS cats, array_agg(x.quantity ORDER BY x.category_id) AS qtys,
               array_agg(x.price ORDER BY x.category_id) AS prices
        FROM booking_items x WHERE x.booking_id = b.id) it ON true
    ORDER BY g.i;
END;
$$ LANGUAGE plpgsql;

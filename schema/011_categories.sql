-- Ticket categories: each with its own price and stock, under the event's
-- capacity. The event's total_tickets and available_tickets keep their
-- meaning (the whole venue, what is left of it) and the seed's trigger
-- keeps moving them; a category's stock is a second limit a hold must fit.
--
-- A booking's tickets by category are rows of booking_items, one per
-- category it holds. Items for every booking, one category or several,
-- rather than a category_id on bookings plus items for the rest: one shape
-- means one stock trigger, one reading of a hold and one way to count a
-- category, and a single-item hold costs one narrow row more.
CREATE TABLE categories (
    id SERIAL PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    total_tickets INTEGER NOT NULL,
    available_tickets INTEGER NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- Always, guarded event or not: categories exist only for the grant
    -- path, which never oversells.
    CONSTRAINT categories_stock_guard CHECK (available_tickets >= 0),
    CONSTRAINT categories_stock_ceiling CHECK (available_tickets <= total_tickets),
    CONSTRAINT categories_price_nonnegative CHECK (price >= 0)
);
CREATE INDEX categories_event ON categories (event_id, id);

CREATE TABLE booking_items (
    -- A failed booking may be deleted (008); its items go with it.
    booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
    category_id INTEGER NOT NULL REFERENCES categories(id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    price DECIMAL(10,2) NOT NULL,
    PRIMARY KEY (booking_id, category_id)
);
-- No index on category_id: every hold would pay for it, and only holdfast
-- check, which reads every item anyway, looks items up by category.

-- Every event has its default category, with the event's price and stock,
-- and every booking so far is an item of it: the invariants hold per
-- category from the start.
INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
SELECT e.id, 'General admission', e.ticket_price, e.total_tickets, greatest(e.available_tickets, 0)
FROM events e ORDER BY e.id;
INSERT INTO booking_items (booking_id, category_id, quantity, price)
SELECT b.id, c.id, b.quantity, round(b.total_amount / b.quantity, 2)
FROM bookings b JOIN categories c ON c.event_id = b.event_id
WHERE b.quantity > 0;

-- An event inserted any way (the seed's plain SQL, the admin API) gets its
-- default category at once.
CREATE FUNCTION events_default_category()
RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
    SELECT n.id, 'General admission', n.ticket_price, n.total_tickets, greatest(n.available_tickets, 0)
    FROM new_events n ORDER BY n.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_default_category
AFTER INSERT ON events
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT
EXECUTE FUNCTION events_default_category();

-- An event of one category is that category: a change of the event's
-- tickets or price (the admin API's PATCH of the event, plain SQL) moves
-- it too, so a seed-made event keeps selling what its row says. An event
-- of several categories changes them one by one.
CREATE FUNCTION events_follow_only_category()
RETURNS TRIGGER AS $$
BEGIN
    UPDATE categories c
    SET total_tickets = c.total_tickets + (NEW.total_tickets - OLD.total_tickets),
        available_tickets = c.available_tickets + (NEW.total_tickets - OLD.total_tickets),
        price = NEW.ticket_price
    WHERE c.event_id = NEW.id
      AND (SELECT count(*) FROM categories k WHERE k.event_id = NEW.id) = 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_follow_only_category
AFTER UPDATE ON events
FOR EACH ROW WHEN (NEW.total_tickets IS DISTINCT FROM OLD.total_tickets
                   OR NEW.ticket_price IS DISTINCT FROM OLD.ticket_price)
EXECUTE FUNCTION events_follow_only_category();

-- A category's stock moves with its bookings' items, as an event's with its
-- bookings (004): an item inserted takes its tickets, a booking going from
-- pending or confirmed to failed gives its items' tickets back, once. The
-- event row is always locked before its categories (hold_batch locks it
-- first; the bookings' trigger runs before the items' insert; the give-back
-- below updates events first), so the two cannot deadlock.
--
-- The insert also checks what a row's WHEN could not: an item's booking is
-- live and of the category's event.
CREATE FUNCTION take_category_stock_on_insert()
RETURNS TRIGGER AS $$
DECLARE
    r record;
BEGIN
    IF EXISTS (SELECT 1 FROM new_items i
               JOIN bookings b ON b.id = i.booking_id
               JOIN categories c ON c.id = i.category_id
               WHERE b.booking_status NOT IN ('pending', 'confirmed') OR c.event_id <> b.event_id) THEN
        RAISE EXCEPTION 'a booking item must be of a live booking and of a category of its event'
            USING ERRCODE = 'HF001';
    END IF;
    FOR r IN SELECT category_id, sum(quantity) AS quantity FROM new_items GROUP BY category_id ORDER BY category_id LOOP
        UPDATE categories SET available_tickets = available_tickets - r.quantity WHERE id = r.category_id;
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER booking_items_take_stock
AFTER INSERT ON booking_items
REFERENCING NEW TABLE AS new_items
FOR EACH STATEMENT
EXECUTE FUNCTION take_category_stock_on_insert();

-- 004's give-back, with the categories after the events.
CREATE OR REPLACE FUNCTION give_back_stock_on_failure()
RETURNS TRIGGER AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT o.event_id, sum(o.quantity) AS quantity
        FROM old_bookings o
        JOIN new_bookings n ON n.id = o.id
        WHERE o.booking_status IN ('pending', 'confirmed') AND n.booking_status = 'failed'
        GROUP BY o.event_id
        ORDER BY o.event_id
    LOOP
        UPDATE events SET available_tickets = available_tickets + r.quantity WHERE id = r.event_id;
    END LOOP;
    FOR r IN
        SELECT i.category_id, sum(i.quantity) AS quantity
        FROM old_bookings o
        JOIN new_bookings n ON n.id = o.id
        JOIN booking_items i ON i.booking_id = o.id
        WHERE o.booking_status IN ('pending', 'confirmed') AND n.booking_status = 'failed'
        GROUP BY i.category_id
        ORDER BY i.category_id
    LOOP
        UPDATE categories SET available_tickets = available_tickets + r.quantity WHERE id = r.category_id;
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- An item is what was sold: it never changes, and it goes only with its
-- failed booking.
CREATE TRIGGER booking_items_fixed
BEFORE UPDATE ON booking_items
FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
EXECUTE FUNCTION bookings_refuse('a booking item never changes', 'HF001');

CREATE FUNCTION booking_items_refuse_live_delete()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM bookings b WHERE b.id = OLD.booking_id AND b.booking_status IN ('pending', 'confirmed')) THEN
        RAISE EXCEPTION 'an item of a pending or confirmed booking cannot be deleted: fail the booking first'
            USING ERRCODE = 'HF001';
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER booking_items_live_kept
BEFORE DELETE ON booking_items
FOR EACH ROW EXECUTE FUNCTION booking_items_refuse_live_delete();

CREATE TRIGGER booking_items_no_truncate
BEFORE TRUNCATE ON booking_items
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_refuse_truncate();

-- A category's available_tickets moves only with its items (the triggers
-- above, at depth 1: see 008 for why pg_trigger_depth() tells them apart),
-- or with its total_tickets by the same amount; it is inserted with all of
-- its tickets available (but for the default category the events' trigger
-- makes); it never moves to another event.
CREATE TRIGGER categories_stock_moves_with_bookings
BEFORE UPDATE ON categories
FOR EACH ROW WHEN (pg_trigger_depth() = 0
                   AND NEW.available_tickets - OLD.available_tickets
                       IS DISTINCT FROM NEW.total_tickets - OLD.total_tickets)
EXECUTE FUNCTION bookings_refuse('a category''s available_tickets changes only with bookings, or with total_tickets by the same amount', 'HF001');

CREATE TRIGGER categories_inserted_whole
BEFORE INSERT ON categories
FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND NEW.available_tickets IS DISTINCT FROM NEW.total_tickets)
EXECUTE FUNCTION bookings_refuse('a category is inserted with available_tickets = total_tickets', 'HF001');

CREATE TRIGGER categories_fixed_event
BEFORE UPDATE ON categories
FOR EACH ROW WHEN (NEW.event_id IS DISTINCT FROM OLD.event_id)
EXECUTE FUNCTION bookings_refuse('a category cannot move to another event', 'HF001');

-- hold_batch as in 006, with every check of this round.
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
-- The sale window of 009 and the waiting room's checks (010):
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
--
-- The categories, lines marked "011:":
--
--   * p_quantities goes; each request brings its items as three flattened
--     arrays: p_item_reqs[j] the request (1-based, non-decreasing: the
--     items of a request are contiguous and in request order, and every
--     request has at least one), p_item_cats[j] the category (NULL: the
--     event's only category, as the seed's body asks; 'category_required'
--     when the event has several) and p_item_qtys[j] the tickets of it. The
--     caller has made each category appear at most once in a request.
--   * the event's categories are read once, under the event row's lock
--     (which every writer of stock takes first); a request is granted only
--     if the event and each of its categories have its tickets, all or
--     nothing. A refused request takes nothing, so a request for a sold-out
--     category never blocks the next.
--   * sold_out names the short category (short_category; NULL when the
--     event's capacity is what is short, or for the seed's body, which
--     named none); category_not_found when an item
--     names a category of another event or none.
--   * the caps and the lapsed holds' expiry count a request's tickets, all
--     items together (bookings.quantity is their sum).
--   * each hold's items are inserted with it, at the category's price; the
--     row returns them (item_categories, item_quantities, item_prices).
--   * price is NULL: the total of several items is no one price times the
--     quantity; too_large is decided here.
DROP FUNCTION hold_batch(bigint, text[], int[], bigint, int);

CREATE FUNCTION hold_batch(p_event bigint, p_emails text[], p_keys text[], p_clients inet[],
                           p_item_reqs int[], p_item_cats int[], p_item_qtys int[], -- 011
                           p_ttl_us bigint, p_cap int, p_client_cap int,
                           p_places text[] DEFAULT NULL)
RETURNS TABLE (n int, outcome text, price numeric, expired int,
               hold_id uuid, event_id int, user_email varchar, quantity int, total_amount numeric,
               expires_at timestamptz, created_at timestamptz, confirmed_at timestamptz, status text,
               short_category int, item_categories int[], item_quantities int[], item_prices numeric[]) -- 011
AS $$
#variable_conflict use_column
DECLARE
    v_available int;
    v_expired int := 0;
    v_tried_lapsed boolean := false;
    v_count int := coalesce(array_length(p_emails, 1), 0);
    v_outcomes text[] := array_fill(NULL::text, ARRAY[v_count]);
    v_ids uuid[] := array_fill(NULL::uuid, ARRAY[v_count]);
    v_granted int[] := '{}';
    v_taken int := 0;
    v_keys text[];
    v_owned int[];
    v_clients inet[];
    v_held int[];
    v_pos int;
    v_cpos int;
    v_gone_keys text[];
    v_gone_tickets int[];
    v_gone_clients inet[];
    v_gone_held int[];
    v_gone int;
    v_q int;
    v_queued boolean;
    v_place text;
    v_sale text;
    v_now timestamptz; -- when the holds are made, by the database's clock
    -- 011: the categories, their stock as this batch leaves it, and per
    -- request and per item what the loop decided.
    v_items int := coalesce(array_length(p_item_reqs, 1), 0);
    v_cat_ids int[];
    v_cat_avail int[];
    v_cat_price numeric[];
    v_cat_taken int[];
    v_ncat int;
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
    IF array_length(p_keys, 1) IS DISTINCT FROM array_length(p_emails, 1)
       OR array_length(p_clients, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % keys, % clients', v_count,
            array_length(p_keys, 1), array_length(p_clients, 1);
    END IF;
    IF array_length(p_item_cats, 1) IS DISTINCT FROM array_length(p_item_reqs, 1)
       OR array_length(p_item_qtys, 1) IS DISTINCT FROM array_length(p_item_reqs, 1) THEN
        RAISE EXCEPTION 'hold_batch: % item requests but % categories, % quantities', v_items,
            array_length(p_item_cats, 1), array_length(p_item_qtys, 1);
    END IF;
    IF p_places IS NOT NULL AND array_length(p_places, 1) IS DISTINCT FROM array_length(p_emails, 1) THEN
        RAISE EXCEPTION 'hold_batch: % emails but % places', v_count, array_length(p_places, 1);
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_item_qtys) AS q WHERE q IS NULL OR q < 1) THEN
        RAISE EXCEPTION 'hold_batch: quantities must be positive' USING ERRCODE = '22023';
    END IF;
    IF p_cap > 0 AND EXISTS (SELECT 1 FROM unnest(p_keys) AS k WHERE k IS NULL) THEN
        RAISE EXCEPTION 'hold_batch: every request needs a buyer key' USING ERRCODE = '22023';
    END IF;
    -- 011: each request's items, contiguous and in order.
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

    SELECT e.available_tickets, e.queue_admit_per_second IS NOT NULL, sale_window(e.on_sale_at, e.off_sale_at)
    INTO v_available, v_queued, v_sale
    FROM events e WHERE e.id = p_event FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT i::int, 'not_found', NULL::numeric, 0,
            NULL::uuid, NULL::int, NULL::varchar, NULL::int, NULL::numeric,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text,
            NULL::int, NULL::int[], NULL::int[], NULL::numeric[]
        FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;
    IF v_sale IS NOT NULL THEN
        RETURN QUERY SELECT i::int, v_sale, NULL::numeric, 0,
            NULL::uuid, NULL::int, NULL::varchar, NULL::int, NULL::numeric,
            NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text,
            NULL::int, NULL::int[], NULL::int[], NULL::numeric[]
        FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;
    -- 011: the categories, read under the event's lock. Not locked
    -- themselves: every writer of a category's stock (the stock triggers,
    -- the admin API) holds the event's lock first, and a plain UPDATE that
    -- does not meets the check that keeps a category from going below zero
    -- when the items' trigger takes its tickets. A lock would cost a row
    -- write per category on every batch.
    SELECT array_agg(k.id ORDER BY k.id), array_agg(k.available_tickets ORDER BY k.id), array_agg(k.price ORDER BY k.id)
    INTO v_cat_ids, v_cat_avail, v_cat_price
    FROM categories k WHERE k.event_id = p_event;
    v_ncat := coalesce(array_length(v_cat_ids, 1), 0);
    v_cat_taken := array_fill(0, ARRAY[greatest(v_ncat, 1)]);

    IF p_cap > 0 THEN
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
        -- 011: the request's items, resolved against the event's categories.
        v_q := 0;
        v_bad := NULL;
        FOR j IN v_first[i] .. v_last[i] LOOP
            v_c := p_item_cats[j];
            IF v_c IS NULL THEN
                IF v_ncat <> 1 THEN
                    v_bad := 'category_required';
                    EXIT;
                END IF;
                v_c := v_cat_ids[1];
            END IF;
            v_item_pos[j] := array_position(v_cat_ids, v_c);
            IF v_item_pos[j] IS NULL THEN
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
        -- 011: the first of the request's categories that is short.
        v_short := NULL;
        FOR j IN v_first[i] .. v_last[i] LOOP
            IF v_cat_avail[v_item_pos[j]] < p_item_qtys[j] THEN
                v_short := v_item_cat[j];
                EXIT;
            END IF;
        END LOOP;
        IF NOT v_tried_lapsed AND (v_available < v_q OR v_short IS NOT NULL -- 011
                OR (v_pos IS NOT NULL AND v_owned[v_pos] + v_q > p_cap)
                OR (v_cpos IS NOT NULL AND v_held[v_cpos] + v_q > p_client_cap)) THEN
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
                SELECT e.available_tickets - v_taken INTO v_available FROM events e WHERE e.id = p_event;
                -- 011: and the categories, as the stock trigger left them.
                FOR k IN 1 .. v_ncat LOOP
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
        IF v_short IS NOT NULL THEN -- 011
            v_outcomes[i] := 'sold_out';
            -- The seed's body named no category: its answer stays the
            -- seed's.
            IF p_item_cats[v_first[i]] IS NOT NULL THEN
                v_shorts[i] := v_short;
            END IF;
            CONTINUE;
        END IF;
        IF v_available < v_q THEN
            v_outcomes[i] := 'sold_out';
            CONTINUE;
        END IF;
        v_amount := 0; -- 011: the sum of the items at their categories' prices
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
        FOR j IN v_first[i] .. v_last[i] LOOP -- 011
            v_cat_avail[v_item_pos[j]] := v_cat_avail[v_item_pos[j]] - p_item_qtys[j];
            v_cat_taken[v_item_pos[j]] := v_cat_taken[v_item_pos[j]] + p_item_qtys[j];
            v_granted_items := v_granted_items || j;
        END LOOP;
        v_available := v_available - v_q;
        v_taken := v_taken + v_q;
        v_amounts[i] := v_amount;
        v_outcomes[i] := 'held';
        v_ids[i] := gen_random_uuid();
        v_granted := v_granted || i;
    END LOOP;

    -- A hold lasts exactly its TTL from when it is made: the transaction a
    -- keyed batch or /book/safe runs this in began earlier (created_at's
    -- default), and each row's clock_timestamp() differs.
    v_now := clock_timestamp();

    -- One statement inserts the batch's holds and their items and answers
    -- every request: each statement-level stock trigger makes one update
    -- per row it moves, at the statement's end, when it sees both inserts.
    RETURN QUERY
    WITH ins AS (
        INSERT INTO bookings (hold_id, event_id, user_email, buyer_key, client_addr, quantity, total_amount,
                              booking_status, created_at, expires_at, queue_place)
        SELECT v_ids[g.i], p_event, p_emails[g.i], p_keys[g.i], p_clients[g.i], v_qtys[g.i],
               v_amounts[g.i], 'pending', v_now, v_now + p_ttl_us * interval '1 microsecond',
               nullif(p_places[g.i], '')
        FROM unnest(v_granted) WITH ORDINALITY AS g(i, k)
        ORDER BY g.k
        RETURNING bookings.id, bookings.hold_id, bookings.event_id, bookings.user_email, bookings.quantity,
                  bookings.total_amount, bookings.expires_at, bookings.created_at, bookings.confirmed_at,
                  CASE WHEN bookings.expires_at <= clock_timestamp() THEN 'expired' ELSE 'pending' END AS status
    ), items AS ( -- 011
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
SET enable_seqscan = off;

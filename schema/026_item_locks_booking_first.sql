-- The items' stock trigger of 025 updated each category before it locked
-- the items' bookings. Failing a booking (the give-back) takes them the
-- other way: the booking's row first, then its items' categories. So a
-- transaction failing two bookings, one of them with an item of category
-- C, and an insert of an item of C for the other deadlocked: the insert
-- held C and waited for its booking, the give-back held the booking and
-- waited for C. 020 had no such wait, as it locked a category only
-- FOR KEY SHARE, which an update of its stock does not wait for.
--
-- The trigger now takes the bookings first, in a statement of their own
-- that also checks them (HF001 before any category is touched), and keeps
-- each item's category, booking's event and quantity. The UPDATE that
-- takes the stock then reads each category once, as in 025, and only a
-- category of the item's booking's event: an item naming another event's
-- category (or none) updates and locks nothing, and the count of the items
-- the UPDATE covered falls short (HF001). One order of refusals differs
-- from 020's: when such an item shares a statement with one that would
-- take its category below zero, the category's CHECK (23514) answers
-- first; either way the statement is refused whole.
CREATE OR REPLACE FUNCTION take_category_stock_on_insert()
RETURNS TRIGGER AS $$
DECLARE
    v_items bigint;
    v_live bigint;
    v_covered bigint;
    v_cats int[];
    v_events int[];
    v_qtys int[];
BEGIN
    IF coalesce(current_setting('holdfast.seating', true), '') <> 'on'
       AND EXISTS (SELECT 1 FROM (SELECT DISTINCT i.category_id FROM new_items i) d
                   WHERE EXISTS (SELECT 1 FROM seats s WHERE s.category_id = d.category_id)) THEN
        RAISE EXCEPTION 'a seated category is held by its seats' USING ERRCODE = 'HF005';
    END IF;
    -- The status is tested in the select list, not in a WHERE: a filter on
    -- it, inside the locking subquery or outside it (where PostgreSQL
    -- pushes it in), lets the planner read the bookings through their
    -- partial index of live ones instead of each item's by its key. The
    -- items of one statement are of bookings of that statement (hold_batch
    -- inserts both together), so this lock waits for no one there.
    SELECT (SELECT count(*) FROM new_items), count(*) FILTER (WHERE x.live),
           array_agg(x.category_id), array_agg(x.event_id), array_agg(x.quantity)
    INTO v_items, v_live, v_cats, v_events, v_qtys
    FROM (SELECT i.category_id, b.event_id, i.quantity, b.booking_status IN ('pending', 'confirmed') AS live
          FROM new_items i
          JOIN bookings b ON b.id = i.booking_id
          FOR SHARE OF b) x;
    -- An item of a booking that is gone or not live leaves v_covered NULL:
    -- no category is touched.
    IF v_live = v_items THEN
        WITH u AS (
            UPDATE categories c SET available_tickets = c.available_tickets - d.quantity
            FROM (SELECT p.category_id, p.event_id, sum(p.quantity) AS quantity, count(*) AS items
                  FROM unnest(v_cats, v_events, v_qtys) AS p(category_id, event_id, quantity)
                  GROUP BY p.category_id, p.event_id) d
            WHERE c.id = d.category_id AND c.event_id = d.event_id
            RETURNING d.items
        )
        SELECT coalesce(sum(u.items), 0) INTO v_covered FROM u;
    END IF;
    IF v_covered IS DISTINCT FROM v_items THEN
        RAISE EXCEPTION 'a booking item must be of a live booking and of a category of its event'
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

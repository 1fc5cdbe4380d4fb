-- A booking's items are made with it, by the transaction that makes the
-- booking (hold_batch_events, hold_seats), and never added after: an item
-- added to a booking of an earlier transaction took its category's tickets
-- but not the event's (the event's stock is taken by the booking's
-- quantity, which the item left as it was), so the categories could sell
-- past the event's capacity, and only holdfast check reported the booking
-- whose items no longer added up to it (store/audit.go). The items' stock
-- trigger (026) now also refuses, with the same HF001, an item whose
-- booking's row was not written by the inserting transaction: its xmin,
-- the writer of the row version the check locks, must be the current
-- transaction's id. Nothing in holdfast uses a savepoint or an exception
-- block around the insert of a booking, whose rows would carry a
-- subtransaction's id instead. The comparison costs nothing next to the
-- lookup of the booking the check already makes.
--
-- An update of an old booking in the same transaction also makes its row
-- this transaction's, so the check is that the transaction wrote the
-- booking, not that it inserted it: what it keeps out is an item added
-- later by itself, by hand or by a buggy client of the database.

CREATE OR REPLACE FUNCTION take_category_stock_on_insert()
RETURNS TRIGGER AS $$
DECLARE
    v_items bigint;
    v_live bigint;
    v_covered bigint;
    v_cats int[];
    v_events int[];
    v_qtys int[];
    v_xact xid := pg_current_xact_id()::xid;
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
    FROM (SELECT i.category_id, b.event_id, i.quantity,
                 b.booking_status IN ('pending', 'confirmed') AND b.xmin = v_xact AS live
          FROM new_items i
          JOIN bookings b ON b.id = i.booking_id
          FOR SHARE OF b) x;
    -- An item of a booking that is gone, not live or not this
    -- transaction's leaves v_covered NULL: no category is touched.
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
        RAISE EXCEPTION 'a booking item must be of a live booking written by its own transaction, and of a category of its event'
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

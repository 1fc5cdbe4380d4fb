-- Booking items (and bookings) checked once per statement, not once per row.
--
-- booking_items had two foreign keys (011), to bookings and to categories.
-- PostgreSQL checks a foreign key by a trigger per inserted row, each an
-- SQL statement of its own (SELECT 1 ... FOR KEY SHARE, an executor started
-- and ended): on a batch of 30 holds of one item, 60 statements, about a
-- sixth of the database's work for the whole call of hold_batch_events,
-- and half of what a second item costs (BENCHMARKS.md, "Ticket
-- categories"). The items' statement trigger already joined every item to
-- its booking and category; it now does all the keys did, in one statement
-- over the transition table:
--
--   * on insert (take_category_stock_on_insert): each item's booking and
--     category exist, the booking is live and the category is of its
--     event. The statement that checks locks what it found until the
--     inserting transaction ends: the category FOR KEY SHARE, as the key's
--     check did, so it cannot be deleted; the booking FOR SHARE, one step
--     more than the key's FOR KEY SHARE, so it can be neither deleted nor
--     failed meanwhile (the key let a booking be failed under an item not
--     yet committed, whose tickets the give-back then missed). A row that
--     a transaction committed first deleted is not found (the lock rereads
--     it), so the item is refused. Items inserted with their bookings, as
--     hold_batch_events does, lock rows no one else can see yet.
--     booking_items_seated (013) joins it: the two were separate triggers
--     over the same rows, each a function call and a read of the
--     transition table.
--   * a booking deleted takes its items with it (the key was ON DELETE
--     CASCADE): bookings_delete_items, as bookings_delete_seats does for
--     seats. Only a failed booking may be deleted (008), so
--     booking_items_live_kept lets its items go.
--   * a category with items cannot be deleted (the key was NO ACTION):
--     categories_keep_items.
--   * neither a booking's nor a category's id changes (the keys refused
--     a change of a referenced id; now any change is refused, referenced or
--     not: nothing changes an id, and booking_seats and the outbox refer
--     to bookings by id without a key).
--   * TRUNCATE of bookings or categories is refused while booking_items
--     has rows, unless booking_items is truncated in the same statement
--     (the keys refused a TRUNCATE of a referenced table without its
--     referencing one).
--
-- bookings' own key to events (001) goes the same way, for the same cost
-- (one statement per booking inserted, 30 on a batch of 30 holds, about a
-- twelfth of the call): the stock trigger that takes each event's tickets
-- (take_stock_on_insert) already updates every event of the statement's
-- bookings, which locks each row more strongly than the key's check did;
-- it now counts the rows it updated, and a booking of an event it did not
-- find (none, or one deleted by a transaction that committed first) is
-- refused. An event with bookings cannot be deleted
-- (events_keep_bookings), nor its id changed, nor TRUNCATEd without them.
--
-- holdfast check reports items whose booking or category is missing or
-- whose category is of another event, and bookings of no event
-- (store/audit.go): the triggers keep them out, but
-- session_replication_role = replica turns triggers off, and foreign keys
-- with them.
ALTER TABLE booking_items
    DROP CONSTRAINT booking_items_booking_id_fkey,
    DROP CONSTRAINT booking_items_category_id_fkey;

DROP TRIGGER booking_items_seated ON booking_items;
DROP FUNCTION booking_items_seated();

-- Each row is found by its primary key, as the keys' checks found it:
-- the plan is made (and kept for the session) without knowing the
-- transition table's size, often while bookings is still small, and a
-- hash join over a whole index of bookings (or of events, below) would
-- then be read on every statement as the table grows; so sequential
-- scans, hash joins and merge joins are off, which leaves a nested loop
-- of lookups.
--
-- The checks come first, in the order the two triggers ran them
-- (booking_items_seated sorted first): a seated category's HF005, which the
-- store answers by serving the batch through hold_seats, then the item's
-- booking and category, then the stock. The locks are taken by the same
-- statement that checks: it counts the items whose booking and category it
-- found (and locked) and that are good, against every item.
CREATE OR REPLACE FUNCTION take_category_stock_on_insert()
RETURNS TRIGGER AS $$
DECLARE
    v_items bigint;
    v_good bigint;
BEGIN
    IF coalesce(current_setting('holdfast.seating', true), '') <> 'on'
       AND EXISTS (SELECT 1 FROM new_items i WHERE EXISTS (SELECT 1 FROM seats s WHERE s.category_id = i.category_id)) THEN
        RAISE EXCEPTION 'a seated category is held by its seats' USING ERRCODE = 'HF005';
    END IF;
    SELECT (SELECT count(*) FROM new_items), count(*) FILTER (WHERE x.good)
    INTO v_items, v_good
    FROM (SELECT b.booking_status IN ('pending', 'confirmed') AND c.event_id = b.event_id AS good
          FROM new_items i
          JOIN bookings b ON b.id = i.booking_id
          JOIN categories c ON c.id = i.category_id
          FOR SHARE OF b FOR KEY SHARE OF c) x;
    IF v_good <> v_items THEN
        RAISE EXCEPTION 'a booking item must be of a live booking and of a category of its event'
            USING ERRCODE = 'HF001';
    END IF;
    UPDATE categories c SET available_tickets = c.available_tickets - d.quantity
    FROM (SELECT i.category_id, sum(i.quantity) AS quantity FROM new_items i GROUP BY i.category_id) d
    WHERE c.id = d.category_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

CREATE FUNCTION bookings_delete_items()
RETURNS TRIGGER AS $$
BEGIN
    DELETE FROM booking_items i USING old_bookings o WHERE i.booking_id = o.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_delete_items
AFTER DELETE ON bookings
REFERENCING OLD TABLE AS old_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_delete_items();

-- No index leads with booking_items.category_id (011 says why): this reads
-- every item, as the key's check did for each category deleted; a
-- category is deleted rarely, and one read serves the whole statement.
CREATE FUNCTION categories_keep_items()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM booking_items i JOIN old_categories o ON o.id = i.category_id) THEN
        RAISE EXCEPTION 'a category with booking items cannot be deleted' USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER categories_keep_items
AFTER DELETE ON categories
REFERENCING OLD TABLE AS old_categories
FOR EACH STATEMENT
EXECUTE FUNCTION categories_keep_items();

CREATE TRIGGER bookings_fixed_id
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
EXECUTE FUNCTION bookings_refuse('a booking''s id never changes', 'HF001');

CREATE TRIGGER categories_fixed_id
BEFORE UPDATE ON categories
FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
EXECUTE FUNCTION bookings_refuse('a category''s id never changes', 'HF001');

-- TG_ARGV[0] is the table whose rows refer to the one truncated. After the
-- truncation, so that a TRUNCATE naming that table too finds it empty and
-- passes.
CREATE FUNCTION truncate_keeps_referrers()
RETURNS TRIGGER AS $$
DECLARE
    v_left boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', TG_ARGV[0]) INTO v_left;
    IF v_left THEN
        RAISE EXCEPTION '% cannot be truncated while % has rows: truncate % with it', TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0]
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_truncate_keeps_items
AFTER TRUNCATE ON bookings
FOR EACH STATEMENT
EXECUTE FUNCTION truncate_keeps_referrers('booking_items');

CREATE TRIGGER categories_truncate_keeps_items
AFTER TRUNCATE ON categories
FOR EACH STATEMENT
EXECUTE FUNCTION truncate_keeps_referrers('booking_items');

-- bookings' key to events.
ALTER TABLE bookings DROP CONSTRAINT bookings_event_id_fkey;

-- 015's one UPDATE for all of a statement's events, and the count.
CREATE OR REPLACE FUNCTION take_stock_on_insert()
RETURNS TRIGGER AS $$
DECLARE
    v_events bigint;
    v_taken bigint;
BEGIN
    WITH d AS (
        SELECT n.event_id, sum(n.quantity) AS quantity FROM new_bookings n GROUP BY n.event_id
    ), u AS (
        UPDATE events e SET available_tickets = e.available_tickets - d.quantity
        FROM d WHERE e.id = d.event_id
        RETURNING e.id
    )
    SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u) INTO v_events, v_taken;
    IF v_taken <> v_events THEN
        RAISE EXCEPTION 'a booking must be of an existing event' USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

-- No index leads with bookings.event_id for every booking: this reads the
-- bookings once per statement, where the key's check read them once per
-- event deleted. The event's categories go first (their key cascades), so
-- an event whose bookings have items is refused by categories_keep_items.
CREATE FUNCTION events_keep_bookings()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM bookings b JOIN old_events o ON o.id = b.event_id) THEN
        RAISE EXCEPTION 'an event with bookings cannot be deleted' USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_keep_bookings
AFTER DELETE ON events
REFERENCING OLD TABLE AS old_events
FOR EACH STATEMENT
EXECUTE FUNCTION events_keep_bookings();

CREATE TRIGGER events_fixed_id
BEFORE UPDATE ON events
FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
EXECUTE FUNCTION bookings_refuse('an event''s id never changes', 'HF001');

CREATE TRIGGER events_truncate_keeps_bookings
AFTER TRUNCATE ON events
FOR EACH STATEMENT
EXECUTE FUNCTION truncate_keeps_referrers('bookings');

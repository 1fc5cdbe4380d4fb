-- A booking's items checked once per statement, not once per row.
--
-- booking_items had two foreign keys (011), to bookings and to categories.
-- PostgreSQL checks a foreign key by a trigger per inserted row, each an
-- SQL statement of its own (SELECT 1 ... FOR KEY SHARE, an executor started
-- and ended): on a batch of 30 holds of one item, 60 statements, about a
-- sixth of the database's work for the whole call of hold_batch_events,
-- and a third of what a second item costs (BENCHMARKS.md, "Ticket
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
-- holdfast check reports items whose booking or category is missing, or
-- whose category is of another event (store/audit.go): the triggers keep
-- them out, but session_replication_role = replica turns triggers off, and
-- foreign keys with them.
ALTER TABLE booking_items
    DROP CONSTRAINT booking_items_booking_id_fkey,
    DROP CONSTRAINT booking_items_category_id_fkey;

DROP TRIGGER booking_items_seated ON booking_items;
DROP FUNCTION booking_items_seated();

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
SET enable_seqscan = off;

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

-- After the truncation, so that a TRUNCATE naming booking_items too finds
-- it empty and passes.
CREATE FUNCTION booking_items_refuse_orphans()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM booking_items) THEN
        RAISE EXCEPTION '% cannot be truncated while booking_items has rows: truncate booking_items with it', TG_TABLE_NAME
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_truncate_keeps_items
AFTER TRUNCATE ON bookings
FOR EACH STATEMENT
EXECUTE FUNCTION booking_items_refuse_orphans();

CREATE TRIGGER categories_truncate_keeps_items
AFTER TRUNCATE ON categories
FOR EACH STATEMENT
EXECUTE FUNCTION booking_items_refuse_orphans();

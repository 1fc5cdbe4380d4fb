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
CREATE INDEX booking_items_category ON booking_items (category_id);

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

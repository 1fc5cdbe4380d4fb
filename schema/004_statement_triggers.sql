-- The stock trigger, per statement instead of per row. The seed's row-level
-- trigger updates the event row once per booking; inside one transaction
-- each of those updates leaves a row version the next must step over, so a
-- batch of n holds costs O(n^2) and the sweeper's batches the same. These
-- two statement-level triggers keep the meaning exactly (an insert takes the
-- booking's tickets; the move from pending or confirmed to failed gives them
-- back, once) with one update per event per statement, summed over the
-- statement's rows through transition tables. PostgreSQL allows transition
-- tables only on single-event triggers, hence one for INSERT and one for
-- UPDATE.

DROP TRIGGER booking_status_change ON bookings;
DROP FUNCTION update_available_tickets();

CREATE FUNCTION take_stock_on_insert()
RETURNS TRIGGER AS $$
BEGIN
    UPDATE events e
    SET available_tickets = e.available_tickets - n.quantity
    FROM (SELECT event_id, sum(quantity) AS quantity FROM new_bookings GROUP BY event_id) n
    WHERE e.id = n.event_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION give_back_stock_on_failure()
RETURNS TRIGGER AS $$
BEGIN
    UPDATE events e
    SET available_tickets = e.available_tickets + f.quantity
    FROM (
        SELECT o.event_id, sum(o.quantity) AS quantity
        FROM old_bookings o
        JOIN new_bookings n ON n.id = o.id
        WHERE o.booking_status IN ('pending', 'confirmed') AND n.booking_status = 'failed'
        GROUP BY o.event_id
    ) f
    WHERE e.id = f.event_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER booking_status_change_insert
AFTER INSERT ON bookings
REFERENCING NEW TABLE AS new_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION take_stock_on_insert();

CREATE TRIGGER booking_status_change_update
AFTER UPDATE ON bookings
REFERENCING OLD TABLE AS old_bookings NEW TABLE AS new_bookings
FOR EACH STATEMENT
EXECUTE FUNCTION give_back_stock_on_failure();

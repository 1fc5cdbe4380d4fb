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

-- Each function loops over the statement's events (almost always one) and
-- updates each by its primary key: a join of the transition table against
-- events would be planned without knowing the transition table's size and
-- may scan every event.
CREATE FUNCTION take_stock_on_insert()
RETURNS TRIGGER AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT event_id, sum(quantity) AS quantity FROM new_bookings GROUP BY event_id ORDER BY event_id LOOP
        UPDATE events SET available_tickets = available_tickets - r.quantity WHERE id = r.event_id;
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION give_back_stock_on_failure()
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

-- The guard, rewritten so it costs nothing on the rows it lets through: each
-- rule is a trigger whose WHEN condition PostgreSQL evaluates itself, and
-- only a row that breaks the rule calls the function that refuses it. The
-- old guard ran a PL/pgSQL function for every row inserted or updated.
DROP TRIGGER bookings_guard ON bookings;
DROP FUNCTION bookings_guard();

CREATE FUNCTION bookings_refuse()
RETURNS TRIGGER AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = TG_ARGV[1];
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_insert_live
BEFORE INSERT ON bookings
FOR EACH ROW WHEN (NEW.booking_status NOT IN ('pending', 'confirmed'))
EXECUTE FUNCTION bookings_refuse('a booking must be inserted as pending or confirmed', 'HF001');

-- A failed booking is a record of what happened: nothing about it changes
-- again (its status, its reason, its amounts), only an update that changes
-- nothing passes.
CREATE TRIGGER bookings_failed_is_final
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (OLD.booking_status = 'failed' AND OLD.* IS DISTINCT FROM NEW.*)
EXECUTE FUNCTION bookings_refuse('a failed booking can never change again', 'HF001');

CREATE TRIGGER bookings_confirmed_stays
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (OLD.booking_status = 'confirmed' AND NEW.booking_status = 'pending')
EXECUTE FUNCTION bookings_refuse('a confirmed booking cannot return to pending', 'HF001');

CREATE TRIGGER bookings_fixed_order
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (NEW.event_id IS DISTINCT FROM OLD.event_id OR NEW.quantity IS DISTINCT FROM OLD.quantity)
EXECUTE FUNCTION bookings_refuse('a booking cannot change its event or quantity', 'HF001');

-- No booking is confirmed after its hold expired, whatever the code does:
-- the database's own clock at the moment of the update decides.
CREATE TRIGGER bookings_confirm_in_time
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (OLD.booking_status = 'pending' AND NEW.booking_status = 'confirmed'
                   AND OLD.expires_at IS NOT NULL AND OLD.expires_at <= clock_timestamp())
EXECUTE FUNCTION bookings_refuse('a hold cannot be confirmed after it expired', 'HF002');

-- idx_bookings_status indexes a column of three values: no query of ours
-- can use it (the partial indexes on pending expiries serve the sweeper),
-- and every insert and status change pays to maintain it.
DROP INDEX idx_bookings_status;

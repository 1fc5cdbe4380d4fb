-- Hardening: the database itself refuses what must never happen, whatever
-- any code (ours, a script, a person at psql) does.

-- Stock. While oversell_guard is true the row can never go below zero; only
-- the demo events that show the seed's race switch it off.
ALTER TABLE events
    ADD COLUMN oversell_guard boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT events_stock_guard CHECK (NOT oversell_guard OR available_tickets >= 0),
    ADD CONSTRAINT events_stock_ceiling CHECK (available_tickets <= total_tickets),
    ADD CONSTRAINT events_total_nonnegative CHECK (total_tickets >= 0),
    ADD CONSTRAINT events_price_nonnegative CHECK (ticket_price >= 0);

ALTER TABLE bookings
    ALTER COLUMN event_id SET NOT NULL,
    ADD CONSTRAINT bookings_status_known CHECK (booking_status IN ('pending', 'confirmed', 'failed')),
    ADD CONSTRAINT bookings_quantity_positive CHECK (quantity > 0);

-- The stock trigger gives tickets back exactly once: only on the move from a
-- live status (pending or confirmed) to failed. The seed's version restored
-- on any change to failed, so failed -> pending -> failed would restore twice;
-- bookings_guard below makes that path impossible, and this check makes the
-- restore itself say what it means.
CREATE OR REPLACE FUNCTION update_available_tickets()
RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE events
        SET available_tickets = available_tickets - NEW.quantity
        WHERE id = NEW.event_id;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.booking_status IN ('pending', 'confirmed') AND NEW.booking_status = 'failed' THEN
            UPDATE events
            SET available_tickets = available_tickets + OLD.quantity
            WHERE id = OLD.event_id;
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- bookings_guard refuses the rows and transitions the stock trigger cannot
-- account for. SQLSTATE HF001 marks them so the service can tell them apart
-- from a stock check.
CREATE FUNCTION bookings_guard()
RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.booking_status NOT IN ('pending', 'confirmed') THEN
            RAISE EXCEPTION 'a booking must be inserted as pending or confirmed, not %', NEW.booking_status
                USING ERRCODE = 'HF001';
        END IF;
        RETURN NEW;
    END IF;

    IF OLD.booking_status = 'failed' AND NEW.booking_status IS DISTINCT FROM 'failed' THEN
        RAISE EXCEPTION 'booking % is failed and can never change status again', OLD.id
            USING ERRCODE = 'HF001';
    END IF;
    IF OLD.booking_status = 'confirmed' AND NEW.booking_status = 'pending' THEN
        RAISE EXCEPTION 'booking % is confirmed and cannot return to pending', OLD.id
            USING ERRCODE = 'HF001';
    END IF;
    IF NEW.event_id IS DISTINCT FROM OLD.event_id OR NEW.quantity IS DISTINCT FROM OLD.quantity THEN
        RAISE EXCEPTION 'booking % cannot change its event or quantity', OLD.id
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_guard
BEFORE INSERT OR UPDATE ON bookings
FOR EACH ROW
EXECUTE FUNCTION bookings_guard();

-- holdfast_meta records one-off facts about a database, such as "the dev
-- sample events were loaded", so they happen once.
CREATE TABLE holdfast_meta (
    key text PRIMARY KEY,
    value text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

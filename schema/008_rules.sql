-- Rules the database enforces whatever any code does: until now they held
-- only because holdfast's Go never broke them, and plain SQL could. Each
-- refusal is a trigger whose WHEN condition PostgreSQL evaluates itself, so
-- the rows that keep the rules pay nothing (see 004); SQLSTATE HF001 marks a
-- refusal, as for the earlier booking rules.

-- A pending booking is a hold, and a hold has an expiry: without one it can
-- never be confirmed (confirm compares it with the clock) and the sweeper
-- never finds it, so its tickets stay out of stock for good. The seed's
-- plain INSERT INTO bookings (status defaulting to pending) made exactly
-- that. Rows already made that way are given an expiry of now, so the
-- sweeper gives their tickets back on its next run instead of the
-- migration failing.
UPDATE bookings SET expires_at = now() WHERE booking_status = 'pending' AND expires_at IS NULL;
ALTER TABLE bookings
    ADD CONSTRAINT bookings_pending_expires CHECK (booking_status <> 'pending' OR expires_at IS NOT NULL);

-- A confirmed booking may end only as a cancellation (step 6 cancels):
-- failure_reason says why a booking failed, and 'cancelled' joins
-- 'released' and 'expired'.
ALTER TABLE bookings
    DROP CONSTRAINT bookings_failure_reason_known,
    ADD CONSTRAINT bookings_failure_reason_known CHECK (failure_reason IN ('released', 'expired', 'cancelled'));

CREATE TRIGGER bookings_confirmed_ends_cancelled
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (OLD.booking_status = 'confirmed' AND NEW.booking_status = 'failed'
                   AND NEW.failure_reason IS DISTINCT FROM 'cancelled')
EXECUTE FUNCTION bookings_refuse('a confirmed booking can fail only as a cancellation (failure_reason cancelled)', 'HF001');

-- A live booking's tickets are out of stock; deleting the row would lose
-- them for good. Fail it first (the stock trigger gives them back), then a
-- failed row may be deleted. TRUNCATE fires no row trigger, so it is
-- refused as a statement while any live booking exists.
CREATE TRIGGER bookings_live_kept
BEFORE DELETE ON bookings
FOR EACH ROW WHEN (OLD.booking_status IN ('pending', 'confirmed'))
EXECUTE FUNCTION bookings_refuse('a pending or confirmed booking cannot be deleted: fail it first', 'HF001');

CREATE FUNCTION bookings_refuse_truncate()
RETURNS TRIGGER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM bookings WHERE booking_status IN ('pending', 'confirmed')) THEN
        RAISE EXCEPTION 'bookings holds pending or confirmed bookings and cannot be truncated'
            USING ERRCODE = 'HF001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bookings_no_truncate
BEFORE TRUNCATE ON bookings
FOR EACH STATEMENT
EXECUTE FUNCTION bookings_refuse_truncate();

-- Stock moves only with bookings. available_tickets may change in two ways:
-- by the stock triggers of 004, as bookings are inserted or fail, or
-- together with total_tickets by the same amount (an organiser adding or
-- withdrawing tickets). Anything else, such as
-- UPDATE events SET available_tickets = total_tickets under live bookings,
-- would sell tickets twice on a guarded event.
--
-- The stock triggers are told apart by pg_trigger_depth(): their update of
-- events runs inside a trigger (depth 1 when the WHEN clause is evaluated),
-- a statement sent by a client runs at depth 0. The alternative, a
-- transaction-local setting the stock trigger sets, would be one more
-- statement on the hottest path (every hold and every sweep batch), would
-- have to be cleared again before the trigger returns or it would let the
-- rest of the transaction through, and any client can SET it; a client can
-- not make its own statement run at depth 1 without creating a trigger,
-- which needs the rights that could drop this one anyway.
--
-- bookings_refuse (004) raises its arguments whatever table fired it.
CREATE TRIGGER events_stock_moves_with_bookings
BEFORE UPDATE ON events
FOR EACH ROW WHEN (pg_trigger_depth() = 0
                   AND NEW.available_tickets - OLD.available_tickets
                       IS DISTINCT FROM NEW.total_tickets - OLD.total_tickets)
EXECUTE FUNCTION bookings_refuse('available_tickets changes only with bookings, or with total_tickets by the same amount', 'HF001');

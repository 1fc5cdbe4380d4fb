-- hold_batch's check that a pass's place has not booked already
-- (pass_used: a confirmed booking of the place) runs once per request of a
-- queued sale. Planned while bookings was empty, as PL/pgSQL keeps a
-- session's plans, it chose bookings_event_buyer_live (event_id first)
-- and read every live booking of the event to find the place: 0.46 ms a
-- request on a sale's event. An index whose predicate is the check's own
-- is the cheapest choice on any table, empty or full, and holds only the
-- confirmed bookings of a place.
CREATE INDEX bookings_place_confirmed ON bookings (event_id, queue_place)
    WHERE booking_status = 'confirmed' AND queue_place IS NOT NULL;

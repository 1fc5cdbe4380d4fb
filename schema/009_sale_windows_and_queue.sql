-- Sale day: an event's sale window and its waiting room.
--
-- on_sale_at and off_sale_at bound when the event's tickets may be held or
-- booked, by the database's clock (either NULL: on sale now, never closes).
-- The queue_* columns configure the event's waiting room in Redis; NULL
-- queue_admit_per_second means the event has no queue. bookings.queue_place
-- records the waiting room place whose pass took the booking, so a pass is
-- used once and the place can be marked done.
ALTER TABLE events
    ADD COLUMN on_sale_at timestamptz,
    ADD COLUMN off_sale_at timestamptz,
    ADD COLUMN queue_admit_per_second int,
    ADD COLUMN queue_pass_ttl_seconds int,
    ADD CONSTRAINT events_sale_window CHECK (off_sale_at > on_sale_at),
    ADD CONSTRAINT events_queue_rate CHECK (queue_admit_per_second BETWEEN 1 AND 100000),
    ADD CONSTRAINT events_queue_pass_ttl CHECK (queue_pass_ttl_seconds BETWEEN 10 AND 86400),
    -- A queue has both settings or neither.
    ADD CONSTRAINT events_queue_complete CHECK ((queue_admit_per_second IS NULL) = (queue_pass_ttl_seconds IS NULL));

ALTER TABLE bookings ADD COLUMN queue_place text;


-- sale_window is the one statement of the sale window's rule: NULL while
-- the event is on sale, else the refusal's code, by the database's clock at
-- this moment (clock_timestamp, as expiry is). hold_batch and the store's
-- locked reads of an event call it.
CREATE FUNCTION sale_window(p_on timestamptz, p_off timestamptz) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN p_on > clock_timestamp() THEN 'not_on_sale'
                WHEN p_off <= clock_timestamp() THEN 'sale_closed' END
$$;

-- The sale window is checked by hold_batch, right after it locks the event
-- row and by the database's clock: see 010, which defines the function with
-- every check of this round (007's caps, this window, the waiting room's).

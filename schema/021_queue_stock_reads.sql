-- The admission step's reading of the stock (store.qQueueStock) runs every
-- 150 ms on every instance, for every queued event, so its cost must not
-- grow with the sale.
--
-- Its list of the places that booked lately (created_at within a second
-- of the last reading) found them through bookings_event_queue_place
-- (event_id, queue_place), which has no time: every step read every
-- booking made with a pass since the sale began (16.7 ms a step after
-- 15,000 holds with passes, in make bench). Since 019, the pass_used
-- check has an index of its own, bookings_place_confirmed, and nothing
-- else reads by (event_id, queue_place): this one replaces it, ordered by
-- time, with the place in the leaf for an index-only read. The table keeps
-- the same number of indexes.
CREATE INDEX bookings_event_place_recent ON bookings (event_id, created_at) INCLUDE (queue_place)
    WHERE queue_place IS NOT NULL;
DROP INDEX bookings_event_queue_place;

-- The admission step's reading of the stock (store.qQueueStock) now lists
-- each booking made with a pass lately by its place, id and tickets, not
-- only the places: a place that held 1 of a cap of 4 may still hold 3, and
-- the step reserves those 3 for it (it reserved nothing once the place had
-- booked, and admitted the next place to find the place's second hold had
-- taken its tickets). The reading's index (021) carries the two columns,
-- so it stays an index-only read of the holds since the last step.
CREATE INDEX bookings_event_place_booked ON bookings (event_id, created_at) INCLUDE (queue_place, id, quantity)
    WHERE queue_place IS NOT NULL;
DROP INDEX bookings_event_place_recent;

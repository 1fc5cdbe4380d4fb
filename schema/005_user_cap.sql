-- The per-buyer cap counts a buyer's live tickets per event, with emails
-- compared case-folded: this index finds them from inside the transaction
-- that holds the event row.
CREATE INDEX bookings_event_buyer ON bookings (event_id, lower(user_email));

-- Extending a hold moves its expiry later. A hold whose expiry has passed
-- is over, swept or not: its tickets are owed back to the sale, and moving
-- its expiry later would bring it back to life after a buyer (or the
-- sweeper, or a confirm that came too late) was told it expired. The
-- database's own clock at the moment of the update decides, as for
-- confirms (bookings_confirm_in_time, 004); HF002 marks the refusal the
-- store retries, finding the hold lapsed.
--
-- Moving an expiry earlier stays allowed: that only shortens a hold.
CREATE TRIGGER bookings_lapsed_stays
BEFORE UPDATE ON bookings
FOR EACH ROW WHEN (OLD.booking_status = 'pending' AND NEW.booking_status = 'pending'
                   AND NEW.expires_at > OLD.expires_at AND OLD.expires_at <= clock_timestamp())
EXECUTE FUNCTION bookings_refuse('a hold cannot be extended after it expired', 'HF002');

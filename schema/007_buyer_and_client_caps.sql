-- The per-buyer cap by one folding rule, and a cap per client address.
--
-- buyer_key is the buyer's email as the per-buyer cap compares it: NFKC case
-- folded, computed by holdfast (booking.BuyerKey, golang.org/x/text) for
-- every booking it writes. The database used to fold with lower(), whose
-- rules are the locale's (under the C locale it folds ASCII alone) and know
-- nothing of NFC and NFD: two spellings of one address were two buyers.
--
-- client_addr is the address the request came from (the peer, or
-- X-Forwarded-For behind a trusted proxy), NULL when unknown: the
-- per-client cap counts the pending tickets of each address.
ALTER TABLE bookings
    ADD COLUMN buyer_key text,
    ADD COLUMN client_addr inet;

-- The fallback for rows holdfast did not write (the seed's plain INSERT, a
-- script, a support desk): lower() of the NFKC form, which matches
-- holdfast's key for every address that case-folds as it lower-cases (all
-- of ASCII among them), so such rows still count against their buyer.
CREATE FUNCTION bookings_fallback_buyer_key(p_email text) RETURNS text
LANGUAGE sql STABLE STRICT AS $$
    SELECT lower(CASE WHEN getdatabaseencoding() = 'UTF8' THEN normalize(p_email, NFKC) ELSE p_email END)
$$;

CREATE FUNCTION bookings_fill_buyer_key() RETURNS trigger AS $$
BEGIN
    NEW.buyer_key := bookings_fallback_buyer_key(NEW.user_email);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- Called only for a row without a key: holdfast's own inserts skip it.
CREATE TRIGGER bookings_fill_buyer_key
BEFORE INSERT ON bookings
FOR EACH ROW WHEN (NEW.buyer_key IS NULL)
EXECUTE FUNCTION bookings_fill_buyer_key();

UPDATE bookings SET buyer_key = bookings_fallback_buyer_key(user_email) WHERE buyer_key IS NULL;
ALTER TABLE bookings ALTER COLUMN buyer_key SET NOT NULL;

-- Every cap count runs inside the transaction that holds the event row, by
-- these indexes. bookings_event_buyer (005) indexed lower(user_email), which
-- nothing reads any more; its successor leads with event_id too and serves
-- every query by event. Only pending rows count against the client cap.
DROP INDEX bookings_event_buyer;
CREATE INDEX bookings_event_buyer_key ON bookings (event_id, buyer_key);
CREATE INDEX bookings_event_client_pending ON bookings (event_id, client_addr) WHERE booking_status = 'pending';

-- hold_batch gains the two caps in 010, which defines it once with every
-- check of this round (the caps, the sale window of 009, the passes).

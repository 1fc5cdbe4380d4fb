-- An event of one category is that category: a change of the event's total
-- moves the category's too (events_follow_only_category, 011). A seated
-- category's total is its number of seats (013), so such a move would leave
-- seats the stock no longer counts, or stock no seat can sell. The admin
-- API refused it by asking whether a category with the event's id was
-- seated: an event id where a category id belonged, so it refused a plain
-- event whose id a seated category of another event had, and let an event
-- whose only category is seated change its total. The rule now lives here,
-- where every path passes, plain SQL included: HF006, which the store
-- answers as "change the seat map instead".
CREATE OR REPLACE FUNCTION events_follow_only_category()
RETURNS TRIGGER AS $$
BEGIN
    IF NEW.total_tickets IS DISTINCT FROM OLD.total_tickets AND EXISTS (
        SELECT 1 FROM categories c
        WHERE c.event_id = NEW.id
          AND (SELECT count(*) FROM categories k WHERE k.event_id = NEW.id) = 1
          AND EXISTS (SELECT 1 FROM seats s WHERE s.category_id = c.id)) THEN
        RAISE EXCEPTION 'event %: its only category is seated, and a seated category''s total is its number of seats', NEW.id
            USING ERRCODE = 'HF006';
    END IF;
    UPDATE categories c
    SET total_tickets = c.total_tickets + (NEW.total_tickets - OLD.total_tickets),
        available_tickets = c.available_tickets + (NEW.total_tickets - OLD.total_tickets),
        price = NEW.ticket_price
    WHERE c.event_id = NEW.id
      AND (SELECT count(*) FROM categories k WHERE k.event_id = NEW.id) = 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

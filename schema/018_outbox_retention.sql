-- The outbox is kept for --outbox-retention (30 days by default), then
-- purged with its deliveries and their attempts (store.PurgeOutbox): an
-- event that is published and has no delivery still due. The purge finds
-- an event's deliveries by its position.
CREATE INDEX webhook_deliveries_pos ON webhook_deliveries (pos);

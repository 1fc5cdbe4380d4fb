// Package store holds all of holdfast's SQL and all of its Redis keys.
//
// Queries are named constants with $n parameters, run through sqlx's
// *Context methods; the row structs that scan them never leave the package.
// PostgreSQL's error codes become the domain's errors here and nowhere else:
// a lock not had within lock_timeout is sale.ErrBusy, a lost connection is
// sale.ErrUnavailable, the stock guard firing is the caller's sold-out
// error.
//
// The waiting room (queue.go, queue_*.lua) is Redis scripts over one
// event's keys, all under its hash tag. Joins and polls of one event that
// arrive together go to Redis together (internal/coalesce): one script
// call for all of them, at most one call in flight per event and
// instance, each join or poll answered as if alone. Under a crowd a call
// carries about twenty, and its round trip (a Lua call's setup, two system
// calls on each side) is paid once for them; a poll of a waiting place is
// then one HMGET and one ZRANK inside the script.
//
// Every multi-statement write goes through inTx, which retries deadlocks and
// serialization failures a few times before giving up with ErrUnavailable.
//
// Failover (conn.go, db.go). The pool's connections come from a connector
// that wraps lib/pq's and gives each connection its own notice handler. A
// commit PostgreSQL reports done but warns "might not have been replicated"
// (its wait for the synchronous standby was cancelled) is errUnknownOutcome,
// answered unavailable like a connection lost during COMMIT: a failover may
// take it back, so the client must not hear success, and its retry with the
// same key finds the real outcome. A request's end never cancels a COMMIT
// (runTx and once run it under a context of their own, see detach). What is
// told from a read (a replayed response, a transaction that only read, a
// confirmed hold) is settled first: a few bytes of WAL on the same
// connection whose commit waits for the standby. A connection that meets a
// read-only server (25006), a shutdown (class 57) or a broken socket leaves
// the pool, and a connect that finds no server taking writes is
// unavailable.
//
// The rules that grant tickets (the stock, both caps, the sale window, the
// waiting room's pass, lapsed holds expired first) are written once, in the
// database function hold_batch_events (schema/015; hold_batch, of 011, is
// it for one event). A batch of holds without idempotency keys is one call
// of it, run outside any transaction: the event row is locked and released
// inside the database, never held across a round trip to this process.
// CreateHoldsEvents serves the batches of several events in one such call
// (the batcher's groups), taking their event rows in ascending id order and
// with SKIP LOCKED: it waits for no lock at all, and a batch whose event row
// was another transaction's comes back unserved, for CreateHolds. A batch
// with keys (or a group of batches with any) calls it inside a transaction
// that claims the keys first and keeps the responses after, for the
// requests that are not replays; the keys of a batch passed over are not
// kept, so that CreateHolds claims them afresh; /book/safe calls it for its one
// request, after its simulated work under the event row's lock, and
// confirms the hold in the same transaction. Only /book/unsafe, the seed's
// race kept on purpose, reads the stock itself.
//
// Locks. Writes that decide on stock (hold_batch_events, in every caller)
// lock the event row FOR UPDATE before they read it (several rows: in id
// order, each call in one statement), and while they hold it they
// never wait for a booking's lock: the lapsed holds they expire on the way
// are taken with SKIP LOCKED. Idempotency keys are claimed before the event
// row, never after, on every path. Writes that end bookings (release, a late confirm,
// the sweeper) lock the booking rows first; the stock trigger then locks the
// event row at the end of their statement. So the only lock anyone waits for
// while holding a booking is an event row, and nobody holding an event row
// waits for a booking: no two writers can wait on each other in a circle.
// Nor among event rows: a call that holds several waits for none (SKIP
// LOCKED), and every other writer holds one at a time. A
// confirm that succeeds locks its booking and nothing else. The sweeper holds
// an event row only for the trigger's one update and the commit, however
// many holds its batch expires.
//
// # Invariants, and what enforces each
//
// What must never break is refused by the database itself, whatever any
// code, script or person at psql does; Go decides only what needs the
// event row's lock or a sum over rows. A refusing trigger raises SQLSTATE
// HF001 (HF002 for a late confirm or extend); a CHECK raises 23514. Numbers name the
// migration in schema/.
//
// Events:
//   - available_tickets >= 0 while oversell_guard is on: CHECK
//     events_stock_guard (002). total_tickets >= 0, ticket_price >= 0:
//     CHECKs (002).
//   - available_tickets <= total_tickets: CHECK events_stock_ceiling (002).
//   - Stock moves only with bookings: the stock triggers take a booking's
//     tickets when it is inserted and give them back once, when it turns
//     from pending or confirmed to failed (004). Any other change of
//     available_tickets is refused unless total_tickets moves by the same
//     amount (an organiser's change, as the admin PATCH makes): trigger
//     events_stock_moves_with_bookings (008), which tells the stock
//     triggers' own update by pg_trigger_depth().
//   - An event with bookings cannot be deleted, nor its id changed, nor
//     TRUNCATEd without its bookings: triggers events_keep_bookings,
//     events_fixed_id, events_truncate_keeps_bookings (020, in place of
//     001's foreign key).
//
// Bookings:
//   - booking_status is pending, confirmed or failed: CHECK (002); inserted
//     only as pending or confirmed: trigger bookings_insert_live (004).
//   - quantity > 0 and event_id set: CHECK and NOT NULL (002); neither
//     changes afterwards: trigger bookings_fixed_order (004).
//   - A pending booking (a hold) has an expiry: CHECK
//     bookings_pending_expires (008).
//   - A failed booking never changes again: trigger bookings_failed_is_final
//     (004). A confirmed one never returns to pending
//     (bookings_confirmed_stays, 004) and fails only as a cancellation,
//     failure_reason cancelled (bookings_confirmed_ends_cancelled, 008).
//     failure_reason is released, expired or cancelled, and set only on a
//     failed booking: CHECKs (003, 008).
//   - No booking is confirmed after its hold expired, by the database's
//     clock: trigger bookings_confirm_in_time (004); qConfirm asks the same
//     in its WHERE, so the trigger fires only on a race of microseconds.
//   - A lapsed pending hold's expiry never moves later (an extend that came
//     too late cannot bring it back): trigger bookings_lapsed_stays (012),
//     HF002; qExtend asks the same in its WHERE. The cap --hold-max is a
//     setting, not a rule of the data: qExtend computes it in the same
//     statement, by the database's clock.
//   - A pending or confirmed booking is never deleted (its stock would be
//     lost): trigger bookings_live_kept, and bookings_no_truncate for
//     TRUNCATE while any live booking exists (008). Fail it first.
//   - hold_id is unique: UNIQUE (003).
//   - Every booking is of an existing event: the stock trigger counts the
//     events it took tickets from (take_stock_on_insert, 020). Its id never
//     changes (bookings_fixed_id, 020).
//
// Booking items (011; the checks per statement since 020, in place of
// foreign keys checked per row):
//   - An item is of an existing, live booking and of an existing category
//     of the booking's event, both locked until the insert commits: the
//     items' stock trigger (take_category_stock_on_insert, 026: the
//     bookings are locked first, in the give-back's order, then each
//     category is read once, by the UPDATE that takes its stock and locks
//     it), which also refuses a seated category outside hold_seats (HF005).
//   - A deleted booking takes its items (bookings_delete_items); a
//     category with items is never deleted (categories_keep_items), nor
//     its id changed (categories_fixed_id); TRUNCATE of bookings or
//     categories without booking_items is refused.
//   - An item never changes (booking_items_fixed) and goes only with its
//     failed booking (booking_items_live_kept, 011).
//
// Sums and decisions, under the event row's lock (hold_batch_events, the
// one writing of them):
//   - Nobody is granted more than the stock: decided under FOR UPDATE of
//     the event row, and backed by events_stock_guard.
//   - The per-buyer ticket cap (and the per-client cap): counted under the
//     same lock.
//   - available + held + confirmed = total: follows from the rules above
//     for every event /book/unsafe did not touch; no constraint can state
//     a sum over rows, so Audit (holdfast check) verifies it, with
//     0 <= available <= total, no late confirm, and no hold pending more
//     than a sweep interval plus one second past its expiry.
//   - A lapsed hold's stock comes back within a sweep interval: the
//     sweeper (SweepExpired, hold.Sweeper), event by event, an event that
//     fails skipped and counted; buyers short of stock expire lapsed holds
//     first.
//
// The outbox (014, outbox.go, webhooks.go):
//   - Every change of a hold writes its event in the change's own
//     transaction, whatever code made it: the statement-level triggers
//     outbox_insert and outbox_update on bookings, with bookings.change_seq
//     (the hold's sequence) bumped by bookings_count_change under the same
//     conditions. A change that rolls back leaves no event.
//   - An event never changes but for its feed position, given once:
//     trigger outbox_is_final. Positions are unique (outbox_pos) and given
//     by one publisher at a time (the advisory lock publishLock), each
//     round numbering after the last committed one, so the feed has no
//     holes and reads in commit order.
//   - A delivery is due (next_at set) exactly while it has no outcome:
//     CHECK. Claims take due rows FOR UPDATE SKIP LOCKED and lease them.
//
// Idempotency keys: one row per (scope, key), PRIMARY KEY (003), written in
// the transaction of the effect it answers; which answers are kept (200,
// 201, 409, 410, 422) is Go's (idempotency.Response.Keep).
package store

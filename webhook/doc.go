// Package webhook tells the rest of a business about every change of a
// hold: the change feed, webhook endpoints and their deliveries.
//
// # Events, written with their change
//
// Every change of a hold (hold.created, hold.extended, hold.confirmed,
// hold.released, hold.expired, hold.cancelled) is an Event, written by the
// database's triggers on bookings (schema/014) into the outbox table in
// the same transaction as the change: an event exists if and only if its
// change committed, whichever code path made it, the single-statement
// batch of holds and the sweeper included. An event keeps a snapshot of
// the booking; its Hold is rendered by the store's one Hold view, so a
// webhook, the feed and GET /holds/{id} show a hold alike. Sequence counts
// the changes of one hold from 1, so a receiver can put a hold's events in
// order whatever order they arrive in.
//
// # Positions, in commit order
//
// An event's write order is not its commit order: two transactions may
// commit in the other order than they wrote, and a reader that keeps its
// place by write order skips the one that commits last (watermill's SQL
// outbox did: its issues #311 and #576). So the Publisher, running on every
// instance but publishing on one at a time (an advisory lock), gives the
// events it sees committed their feed positions in rounds, each round
// after the last committed: positions become visible in order (they may
// skip numbers), and GET /admin/changes?after= hands every event out once, in
// commit order (within a round, in write order, which for one hold is its
// commit order too: its next change waits for the row lock of the last).
// The same round makes a delivery of each event to every enabled endpoint
// that takes its type.
//
// # Deliveries
//
// The Deliverer runs on every instance. It claims due deliveries with FOR
// UPDATE SKIP LOCKED, in batches, as river does, moving each a lease ahead
// as it takes it, and sends them with no database connection held: a slow
// or dead receiver costs only the worker's own slots, never a hold's
// connection or lock, and at most about a quarter of them (a claim takes
// a few of each endpoint's due deliveries, none of one with its share in
// flight), so it never holds up the other endpoints. What came of the
// attempts is recorded in batches, one transaction for all that ended
// meanwhile. A worker killed mid-send leaves its deliveries due
// again when their lease ends, so delivery is at least once: receivers
// dedupe on the event's id. Each attempt is POSTed with the
// Holdfast-Signature header (package signature), answered within 10 s or
// counted failed; a 2xx delivers, anything else is retried after a delay
// that doubles each time from Options.RetryBase, for Options.RetryFor
// (--webhook-retry-for, 72h); a 410 turns the endpoint off and ends its
// deliveries. Every attempt goes into the endpoint's delivery log, and a
// delivery can be replayed. Deliveries are not ordered; Sequence is.
//
// Endpoints on loopback, private or link-local addresses are refused when
// registered and again when dialled, unless AllowPrivate
// (--webhook-allow-private).
package webhook

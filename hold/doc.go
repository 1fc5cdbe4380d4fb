// Package hold is the heart of holdfast: a buyer takes a hold, its tickets
// leave the stock at once, and within the hold's time the buyer confirms or
// releases it; otherwise it expires and the sweeper puts the tickets back.
// The order, the event, the Locker and the shared errors are package
// sale's; hold adds the hold, its states and its own errors.
//
// A hold is a bookings row in 'pending' with an expiry set by the database's
// clock. Its stock moves only through the database's stock trigger: taken
// when the row is inserted, given back once when it turns 'failed'. So every
// path that ends a hold (release, a confirm that came too late, the sweeper,
// a buyer who finds the stock short and expires lapsed holds on the way) is
// one status update, and none of them can give the tickets back twice.
//
// Whether a hold is granted is decided in one place, the database's
// hold_batch_events (hold_batch for one event), for a batch or a single
// request, with idempotency keys or without (see package store). The
// Batcher gathers one event's requests into one batch, in order of
// arrival, and, while another call is in the database, the batches of
// several events into one call (a group commit); a request's refusal
// touches no other.
//
// Locks never wait in a circle: whoever holds an event row (a buyer taking
// holds) never waits for a booking's lock, and whoever holds bookings (a
// release, the sweeper) waits only for the event row, which the stock
// trigger takes last. A confirm that succeeds locks only its booking, since
// confirming moves no stock; so does an extend. A cancel (the admin's refund
// of a confirmed booking) is a release's shape: its booking, then the event
// row through the stock trigger. The store's doc has the details.
//
// An extend gives a pending hold more time, up to Service.Max after it was
// made; the same statement checks that the hold has not lapsed by the
// database's clock, and the schema refuses moving a lapsed hold's expiry
// later, so no extend brings back a hold a buyer or the sweeper found
// expired.
//
// The Sweeper and the Batcher are background workers (internal/worker):
// serve starts and stops them with the others, in the order its workers
// list gives.
package hold

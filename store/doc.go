// Package store holds all of holdfast's SQL and all of its Redis keys.
//
// Queries are named constants with $n parameters, run through sqlx's
// *Context methods; the row structs that scan them never leave the package.
// PostgreSQL's error codes become the domain's errors here and nowhere else:
// a lock not had within lock_timeout is booking.ErrBusy, a lost connection is
// booking.ErrUnavailable, the stock guard firing is the caller's sold-out
// error.
//
// Every multi-statement write goes through inTx, which retries deadlocks and
// serialization failures a few times before giving up with ErrUnavailable.
//
// A batch of holds without idempotency keys is one statement, a call of the
// database function hold_batch (schema/006), run outside any transaction:
// the event row is locked and released inside the database, never held
// across a round trip to this process. A batch with keys, which must also
// claim and keep them, is a transaction of several statements with the same
// rules; a differential test plays one random sale on both.
//
// Locks. Writes that decide on stock (hold creation, in either form, and
// /book/safe) lock the event row FOR UPDATE before they read it, and while
// they hold it they never wait for a booking's lock: the lapsed holds they
// expire on the way are taken with SKIP LOCKED. Writes that end bookings (release, a late confirm,
// the sweeper) lock the booking rows first; the stock trigger then locks the
// event row at the end of their statement. So the only lock anyone waits for
// while holding a booking is an event row, and nobody holding an event row
// waits for a booking: no two writers can wait on each other in a circle. A
// confirm that succeeds locks its booking and nothing else. The sweeper holds
// an event row only for the trigger's one update and the commit, however
// many holds its batch expires.
package store

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
// Writes that decide on stock lock the event row FOR UPDATE before they read
// it; when they touch several rows they lock the event row first, then its
// bookings, so two writers never wait on each other in a circle.
package store

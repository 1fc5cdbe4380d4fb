// Package hold is the heart of holdfast: a buyer takes a hold, its tickets
// leave the stock at once, and within the hold's time the buyer confirms or
// releases it; otherwise it expires and the sweeper puts the tickets back.
//
// A hold is a bookings row in 'pending' with an expiry set by the database's
// clock. Its stock moves only through the database's stock trigger: taken
// when the row is inserted, given back once when it turns 'failed'. So every
// path that ends a hold (release, a confirm that came too late, the sweeper,
// a buyer who finds the stock short and expires lapsed holds on the way) is
// one status update, and none of them can give the tickets back twice.
//
// Locks are taken in one order everywhere: the event row first, then its
// bookings. The one exception is a confirm that succeeds, which locks only
// the booking row and never the event's, since confirming moves no stock.
package hold

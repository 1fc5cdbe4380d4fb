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
// Locks never wait in a circle: whoever holds an event row (a buyer taking
// holds) never waits for a booking's lock, and whoever holds bookings (a
// release, the sweeper) waits only for the event row, which the stock
// trigger takes last. A confirm that succeeds locks only its booking, since
// confirming moves no stock. The store's doc has the details.
package hold

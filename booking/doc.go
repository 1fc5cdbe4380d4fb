// Package booking is the seed article's half of holdfast: the two ways of
// booking an event's tickets at once, with no hold, the event listing and
// the organiser's admin of events. What it sells (events, orders, the
// shared errors, the Locker) is package sale's; booking and hold both
// import sale and neither imports the other.
//
// POST /book/unsafe is the seed's race, kept on purpose: it reads the stock
// without a lock, does its "work", then inserts a confirmed booking, so many
// buyers who read the same stock all succeed and the event is oversold. It is
// mounted only with --unsafe-demo, and it can oversell only an event whose
// oversell_guard is off: the database refuses negative stock on every other.
//
// POST /book/safe never oversells. It takes the event's Redis lock (a random
// token, a TTL, compare-and-delete release), then in one transaction claims
// its idempotency key, locks the event row FOR UPDATE, does its "work", and
// takes the tickets by the same rules as every hold (the database's
// hold_batch: stock, caps, sale window, waiting room) before confirming them
// at once. The Redis lock only keeps buyers from piling onto the row; the
// row lock is what makes it correct, so with Redis down it still sells
// correctly, on PostgreSQL's lock alone.
//
// Errors are the domain's plain *problem.Error values. The contract answers
// sold_out with 400 on /book/* (the seed's choice) and 409 elsewhere: the
// handlers here pass that one difference, bookStatuses, to internal/httpapi,
// which holds every other status.
package booking

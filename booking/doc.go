// Package booking is the seed article's half of holdfast: the events on sale
// and the two ways of booking them at once, with no hold.
//
// POST /book/unsafe is the seed's race, kept on purpose: it reads the stock
// without a lock, does its "work", then inserts a confirmed booking, so many
// buyers who read the same stock all succeed and the event is oversold. It is
// mounted only with --unsafe-demo, and it can oversell only an event whose
// oversell_guard is off: the database refuses negative stock on every other.
//
// POST /book/safe never oversells. It takes the event's Redis lock (a random
// token, a TTL, compare-and-delete release), then in one transaction locks the
// event row FOR UPDATE, checks the stock and inserts the booking. The Redis
// lock only keeps buyers from piling onto the row; the row lock is what makes
// it correct, so with Redis down it still sells correctly, on PostgreSQL's
// lock alone.
package booking
